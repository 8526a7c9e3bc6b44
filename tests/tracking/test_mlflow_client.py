"""The real `mlflow` client (mlflow-skinny, a test-only dependency) against r1lab served by daphne on
the test database: plain MLflow code, verl's logging pattern and transformers' MLflowCallback on a
tiny Trainer run all land in r1lab runs, series and panels, with nothing changed in their code."""
from __future__ import annotations

import math
import time

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from r1lab.accounts.services import api_token_create  # noqa: E402
from r1lab.tracking.models import MlflowExperiment, Point, Run  # noqa: E402
from r1lab.tracking.selectors import run_page_data  # noqa: E402
from tests.e2e.conftest import daphne_server, server_env  # noqa: E402
from tests.factories import UserFactory  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def mlflow_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """daphne serving r1lab on the test database (what MLFLOW_TRACKING_URI points at)."""
    with django_db_blocker.unblock():
        env = server_env()
    with daphne_server(env, tmp_path_factory.mktemp("mlflow-daphne") / "daphne.log") as base:
        yield base


@pytest.fixture
def tracking(mlflow_server, monkeypatch):
    """The client's environment, as a user sets it: `login(role)` makes a user and exports its
    personal token as MLFLOW_TRACKING_TOKEN."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a wrong answer fails at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    # The fluent API remembers the active experiment (a module global and MLFLOW_EXPERIMENT_ID,
    # which set_experiment exports); each test's database starts empty.
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(mlflow_server)

    def login(role: str = "researcher"):
        user = UserFactory(role=role)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", api_token_create(user=user)[1])
        return user

    yield login
    while mlflow.active_run():
        mlflow.end_run()


def series(run_id, key):
    return list(Point.objects.filter(series__run_id=int(run_id), series__key=key).order_by("step")
                .values_list("step", "value"))


def test_plain_mlflow_code_logs_an_r1lab_run(tracking):
    user = tracking("researcher")
    exp = mlflow.set_experiment("r1-zero-mlflow")
    with mlflow.start_run(run_name="grpo-a") as active:
        mlflow.log_params({"learning_rate": 1e-6, "num_generations": 8})
        for step in range(5):
            mlflow.log_metrics({"reward": step / 10, "completions/mean_length": 40.0 + step}, step=step)
        mlflow.set_tag("stage", "reasoning-grpo")
        mlflow.log_metric("kl", 0.02, step=3)
    run_a = active.info.run_id
    with mlflow.start_run(run_name="grpo-b") as active:
        mlflow.log_params({"learning_rate": 3e-6, "num_generations": 8})
        mlflow.log_metrics({"reward": 0.9}, step=0)
    run_b = active.info.run_id

    run = Run.objects.get(pk=int(run_a))
    assert (run.project, run.name, run.status, run.external, run.created_by) == (
        "r1-zero-mlflow", "grpo-a", "succeeded", True, user)
    assert run.config == {"learning_rate": "1e-06", "num_generations": "8"}  # MLflow params are strings
    assert run.tags["stage"] == "reasoning-grpo" and run.tags["mlflow.source.type"] == "LOCAL"
    assert series(run_a, "reward") == [(s, s / 10) for s in range(5)] and series(run_a, "kl") == [(3, 0.02)]

    client = MlflowClient()
    history = client.get_metric_history(run_a, "reward")
    assert [(m.step, m.value) for m in history] == [(s, s / 10) for s in range(5)]
    assert all(abs(m.timestamp / 1000 - time.time()) < 600 for m in history)  # milliseconds, as MLflow's
    # one id per experiment, whichever way the client asks
    by_name = client.get_experiment_by_name("r1-zero-mlflow")
    assert by_name.experiment_id == exp.experiment_id == client.get_experiment(exp.experiment_id).experiment_id
    assert mlflow.set_experiment("r1-zero-mlflow").experiment_id == exp.experiment_id
    assert MlflowExperiment.objects.filter(name="r1-zero-mlflow").count() == 1

    found = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' AND params.learning_rate = '1e-06' "
                                                    "AND tags.mlflow.runName = 'grpo-a'")
    assert [r.info.run_id for r in found] == [run_a]
    assert found[0].data.metrics == {"reward": 0.4, "completions/mean_length": 44.0, "kl": 0.02}
    assert found[0].data.params == {"learning_rate": "1e-06", "num_generations": "8"}
    assert found[0].info.status == "FINISHED" and found[0].info.user_id == user.username
    newest_first = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    assert [r.info.run_id for r in newest_first] == [run_b, run_a]
    assert [r.info.run_name for r in client.search_runs([exp.experiment_id], "metrics.reward > 0.5")] == ["grpo-b"]
    # the fluent API (as scripts call it); output_format="list": mlflow-skinny has no pandas
    listed = mlflow.search_runs(experiment_names=["r1-zero-mlflow"], order_by=["start_time ASC"], output_format="list")
    assert [r.info.run_id for r in listed] == [run_a, run_b]
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []


def test_retries_params_nan_and_resume_keep_mlflow_rules(tracking):
    tracking("researcher")
    with mlflow.start_run() as active:  # no experiment named: MLflow's Default, r1lab's "default"
        mlflow.log_param("seed", 1)
        mlflow.log_param("seed", 1)  # the same value again: fine, as in MLflow
        with pytest.raises(MlflowException, match="Changing param values is not allowed") as err:
            mlflow.log_param("seed", 2)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        mlflow.log_metric("reward", 0.5, step=1)
        mlflow.log_metric("reward", 0.7, step=1)  # a second value at a step: r1lab keeps the first
        # A loss that turns NaN does not stop the trainer: the value is skipped, the rest stored.
        mlflow.log_metrics({"loss": math.nan, "grad_norm": math.inf, "reward": 0.6}, step=2)
    run_id = active.info.run_id
    run = Run.objects.get(pk=int(run_id))
    assert run.project == "default" and run.config == {"seed": "1"} and active.info.experiment_id == "0"
    assert series(run_id, "reward") == [(1, 0.5), (2, 0.6)]
    assert series(run_id, "loss") == [] and series(run_id, "grad_norm") == []
    # a trainer resuming from a checkpoint reopens its run (MLFLOW_RUN_ID / start_run(run_id=…))
    with mlflow.start_run(run_id=run_id):
        assert Run.objects.get(pk=int(run_id)).status == "running"
        mlflow.log_metric("reward", 0.8, step=3)
    assert Run.objects.get(pk=int(run_id)).status == "succeeded" and series(run_id, "reward")[-1] == (3, 0.8)
    with pytest.raises(Exception, match="KILLED"):
        with mlflow.start_run(run_id=run_id):
            raise RuntimeError("KILLED")  # an exception inside the block ends the run FAILED
    assert Run.objects.get(pk=int(run_id)).status == "failed"


def test_roles_and_artifacts_answer_clear_errors(tracking, tmp_path):
    tracking("researcher")
    with mlflow.start_run(run_name="shared") as active:
        mlflow.log_metric("reward", 1.0, step=0)
        artifact = tmp_path / "val_step0.json"
        artifact.write_text("[]")
        with pytest.raises(Exception, match="r1lab does not store artifacts"):
            mlflow.log_artifact(str(artifact))  # as verl logs validation generations
    tracking("viewer")
    client = MlflowClient()
    assert client.get_run(active.info.run_id).data.metrics == {"reward": 1.0}  # viewers read
    with pytest.raises(MlflowException, match="may not create or log") as err:
        client.log_metric(active.info.run_id, "reward", 2.0, step=1)
    assert err.value.error_code == "PERMISSION_DENIED"
    assert series(active.info.run_id, "reward") == [(0, 1.0)]


def test_verl_mlflow_logger_fills_the_grpo_panels(tracking):
    """What verl's Tracking does with `trainer.logger=['console','mlflow']` (verl/utils/tracking.py):
    set_experiment(project_name), start_run(run_name=experiment_name), log_params(config flattened
    with '/'), then per step log_metrics({k.replace('@', '_at_'): v}, step=step)."""
    tracking("researcher")
    experiment = mlflow.set_experiment("verl-gsm8k")
    mlflow.start_run(experiment_id=experiment.experiment_id, run_name="qwen-grpo")
    mlflow.log_params({"algorithm/adv_estimator": "grpo", "actor_rollout_ref/rollout/n": 8,
                       "trainer/logger/list_len": 2, "trainer/logger/0": "console", "trainer/logger/1": "mlflow"})
    for step in range(1, 4):
        data = {"critic/score/mean": 0.2 * step, "critic/rewards/mean": 0.2 * step - 0.01,
                "response_length/mean": 100.0 + step, "response_length/clip_ratio": 0.01 * step,
                "actor/entropy": 1.0 / step, "actor/kl_loss": 0.001 * step, "actor/pg_clipfrac": 0.1,
                "actor/lr": 1e-6, "perf/throughput": 1500.0, "timing_s/gen": 3.0,
                "val-core/openai/gsm8k/reward/mean@1": 0.3 * step}
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in data.items()}, step=step)
    run_id = mlflow.active_run().info.run_id
    mlflow.end_run()

    run = Run.objects.get(pk=int(run_id))
    assert (run.project, run.name, run.config["actor_rollout_ref/rollout/n"]) == ("verl-gsm8k", "qwen-grpo", "8")
    page = run_page_data(run=run)
    panels = {p["id"]: p for p in page["panels"]}
    for panel, key in [("reward", "critic/score/mean"), ("length", "response_length/mean"), ("entropy", "actor/entropy"),
                       ("kl", "actor/kl_loss"), ("clip", "actor/pg_clipfrac"), ("lr", "actor/lr"),
                       ("throughput", "perf/throughput"), ("eval", "val-core/openai/gsm8k/reward/mean_at_1")]:
        assert any(t["keys"] == [key] for t in panels[panel]["traces"]), (panel, key)
        assert page["series"][key]["x"] == [1, 2, 3], key
    listed = [k for g in page["groups"] for k in g["keys"]]
    assert listed == ["timing_s/gen"]  # only what no GRPO panel shows is listed in a group


def test_transformers_mlflow_callback_on_a_tiny_trainer(tracking, tmp_path, monkeypatch):
    """`report_to=["mlflow"]` (TRL's GRPOTrainer is a Trainer and reports the same way): a tiny Llama
    trained for real for 6 steps; its loss, learning rate and entropy (TRL's name) arrive as series."""
    import torch
    from transformers import Trainer, TrainingArguments

    from training_backend.tiny import build_model

    user = tracking("researcher")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tiny-trainer")
    model, tok = build_model(seed=0)
    texts = [f"{a}+{b}={a + b}" for a, b in [(1, 2), (3, 4), (12, 30), (7, 8), (22, 13), (5, 5), (9, 1), (40, 2)]]
    ids = [tok.encode_fast(t) + [tok.eos_token_id] for t in texts]
    width = max(map(len, ids))
    data = [{"input_ids": torch.tensor(x + [0] * (width - len(x))),
             "attention_mask": torch.tensor([1] * len(x) + [0] * (width - len(x))),
             "labels": torch.tensor(x + [-100] * (width - len(x)))} for x in ids]

    class EntropyTrainer(Trainer):
        """Logs the mean token entropy of the policy as TRL's GRPOTrainer does (`entropy`)."""

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
            with torch.no_grad():
                logp = torch.log_softmax(outputs.logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
                mask = inputs["labels"][:, 1:] != -100  # (B, T-1)
                self._entropy = float((-(logp.exp() * logp).sum(-1))[mask].mean())
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                logs["entropy"] = self._entropy
            super().log(logs, *args, **kwargs)

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, logging_steps=1,
                             learning_rate=1e-3, report_to=["mlflow"], run_name="tiny-mlflow", save_strategy="no",
                             use_cpu=True, disable_tqdm=True)
    EntropyTrainer(model=model, args=args, train_dataset=data).train()

    run = Run.objects.get(project="tiny-trainer")
    assert (run.name, run.status, run.created_by) == ("tiny-mlflow", "succeeded", user)
    assert run.config["learning_rate"] == "0.001" and run.config["max_steps"] == "6"
    assert run.config["hidden_size"] == "96"  # the model's config, logged with the arguments
    loss = series(run.pk, "loss")
    assert [s for s, _ in loss] == [1, 2, 3, 4, 5, 6] and loss[-1][1] < loss[0][1]  # it learned
    page = run_page_data(run=run)
    lr = next(p for p in page["panels"] if p["id"] == "lr")
    assert lr["traces"][0]["keys"] == ["learning_rate"] and len(page["series"]["learning_rate"]["x"]) == 6
    assert page["series"]["entropy"]["x"] == [1, 2, 3, 4, 5, 6]  # the entropy panel's TRL name
    assert not any(p.get("extra") and p["title"] in ("entropy", "learning_rate") for p in page["panels"])
