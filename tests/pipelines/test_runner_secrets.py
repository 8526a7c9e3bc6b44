"""Secrets stay with the worker (issue 15, finding 5): the run token was on the trainer's command
line (visible to `ps`, echoed into trainer.log by multi-GPU launchers, which viewers read), and the
trainer inherited the worker's whole environment (DATABASE_URL, SECRET_KEY, REDIS_URL)."""
import pytest

from r1lab.pipelines import attempts, runner
from r1lab.pipelines.models import Stage
from r1lab.pipelines.selectors import log_tail, mask_secrets

TOKEN = "r1r_" + "A" * 43


def _start(num_gpus=1):
    return attempts.AttemptStart(stage_id=1, run_id=1, attempt=1, kind="grpo", config={}, num_gpus=num_gpus,
                                 resume=False, output_dir="/tmp/o", attempt_dir="/tmp/a", model_path="/m",
                                 train_data="/d", eval_data=None, tracked_run_id=1)


@pytest.mark.parametrize("gpus", [1, 4])
def test_the_token_is_not_on_the_command_line(tmp_path, gpus):
    cmd = runner.trainer_command(_start(gpus), tmp_path / "SPEC.json", report_url="http://lab/api/v1/runs/1",
                                 metrics_out=tmp_path / "m.jsonl")
    assert "--report-url" in cmd and "--token" not in cmd and not any(TOKEN in c for c in cmd)


def test_the_trainer_gets_an_allow_listed_environment_and_the_token(monkeypatch, settings):
    for name, value in {"DATABASE_URL": "postgres://u:pw@db/r1lab", "REDIS_URL": "redis://r:6379/0",
                        "SECRET_KEY": "s" * 50, "AWS_SECRET_ACCESS_KEY": "x", "R1LAB_PUBLIC_URL": "http://lab",
                        "CUDA_HOME": "/usr/local/cuda", "HF_HOME": "/hf", "NCCL_DEBUG": "INFO",
                        "MY_CLUSTER_ID": "7", "SITE_A": "1", "SITE_B": "2"}.items():
        monkeypatch.setenv(name, value)
    env = runner.trainer_env(_start(), token=TOKEN)
    assert env["R1LAB_RUN_TOKEN"] == TOKEN
    assert {"CUDA_HOME", "HF_HOME", "NCCL_DEBUG", "PATH"} <= set(env)
    assert not {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "R1LAB_PUBLIC_URL",
                "MY_CLUSTER_ID", "SITE_A"} & set(env)
    settings.R1LAB_TRAINER_ENV_ALLOW = "MY_CLUSTER_ID, SITE_*"
    env = runner.trainer_env(_start(), token=TOKEN)
    assert env["MY_CLUSTER_ID"] == "7" and env["SITE_A"] == "1" and env["SITE_B"] == "2"
    assert "DATABASE_URL" not in env


def test_the_trainer_reads_its_token_from_the_environment(tmp_path, monkeypatch):
    from training_backend.__main__ import _reporter

    monkeypatch.setenv("R1LAB_RUN_TOKEN", TOKEN)
    args = type("A", (), {"report_url": "http://127.0.0.1:9/api/v1/runs/1", "token": None, "metrics_out": None})()
    reporter, _ = _reporter(args, tmp_path)
    assert reporter.run.token == TOKEN
    monkeypatch.delenv("R1LAB_RUN_TOKEN")
    with pytest.raises(SystemExit, match="R1LAB_RUN_TOKEN"):
        _reporter(args, tmp_path)


LEAKY_LOG = f"""$ deepspeed --num_gpus 2 --module training_backend run SPEC.json --report-url http://lab/api/v1/runs/3 --token {TOKEN}
[launch] env: R1LAB_RUN_TOKEN={TOKEN} DATABASE_URL=postgres://r1lab:hunter22@db:5432/r1lab
POST /api/v1/runs/3/log Authorization: Bearer {TOKEN}
personal r1p_{"b" * 43} SECRET_KEY='django-insecure-abc123' HF_TOKEN: hf_abcdefghij
step 3 loss 0.25 token_count=12 tokens/s 480
"""


def test_every_served_log_line_is_masked(tmp_path, db, client_as):
    log = tmp_path / "trainer.log"
    log.write_text(LEAKY_LOG)
    text = log_tail(str(log))
    for secret in (TOKEN[4:], "b" * 43, "hunter22", "django-insecure-abc123", "hf_abcdefghij"):
        assert secret not in text
    assert "step 3 loss 0.25 token_count=12 tokens/s 480" in text  # the rest is untouched
    assert mask_secrets("r1r_********") == "r1r_********"
    from r1lab.pipelines.models import PipelineRun

    run = PipelineRun.objects.create(name="r", template="r1_zero")
    stage = Stage.objects.create(run=run, index=0, name="GRPO", kind="grpo", config={}, inputs={}, log_path=str(log))
    r = client_as("viewer").get(f"/runs/{stage.run_id}/stages/{stage.pk}/log/")
    assert r.status_code == 200 and TOKEN not in r.content.decode() and "hunter22" not in r.content.decode()
