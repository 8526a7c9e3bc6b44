"""`python -m training_backend` for real, as the Celery worker runs it: progress lines, exit codes,
SIGTERM -> checkpoint + 75, --resume, a bad spec -> 2 with one message per field."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.training_backend.test_trainer import make_model, make_spec

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "training_backend", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, **kw)


def write_spec(tmp_path, **config) -> Path:
    model = make_model(tmp_path / "base")
    spec = make_spec(tmp_path, model, reward_funcs=["format", "tag_count"], **config)
    path = tmp_path / "SPEC.json"
    path.write_text(json.dumps(spec))
    return path


def progress(stdout: str) -> list[dict]:
    return [json.loads(x.split(" ", 1)[1]) for x in stdout.splitlines() if x.startswith("R1LAB_PROGRESS ")]


def test_run_writes_progress_metrics_and_outputs(tmp_path):
    spec = write_spec(tmp_path, max_steps=2)
    result = cli("run", str(spec), "--metrics-out", str(tmp_path / "m.jsonl"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(p["step"], p["total"]) for p in progress(result.stdout)] == [(1, 2), (2, 2)]
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert {r["key"] for r in rows if "key" in r} >= {"reward", "loss", "kl", "completions/mean_length"}
    assert any("sample" in r for r in rows) and rows[-1]["finish"] == "succeeded"
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert outputs["metrics"] == str(tmp_path / "m.jsonl") and Path(outputs["final_model"], "config.json").exists()


def test_bad_spec_exits_2_with_a_message_per_field(tmp_path):
    spec = write_spec(tmp_path, num_generations=3, batch_size=8, learning_rate=-1.0)
    result = cli("run", str(spec))
    assert result.returncode == 2
    assert "batch_size" in result.stderr and "learning_rate" in result.stderr
    assert not (tmp_path / "out").exists()


def test_sigterm_checkpoints_exits_75_and_resume_finishes(tmp_path):
    spec = write_spec(tmp_path, max_steps=50, save_steps=100)
    proc = subprocess.Popen([sys.executable, "-m", "training_backend", "run", str(spec)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait for the first step, then ask it to stop
        if line.startswith("R1LAB_PROGRESS "):
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) == 75, proc.stderr.read()[-3000:]
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    stopped_at = outputs["step"]
    assert outputs["status"] == "stopped" and 1 <= stopped_at < 50
    assert Path(outputs["latest_checkpoint"]).name == f"step-{stopped_at:06d}"

    spec_d = json.loads(spec.read_text())
    spec_d["config"]["max_steps"] = stopped_at + 1
    spec.write_text(json.dumps(spec_d))
    result = cli("run", str(spec), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p["step"] for p in progress(result.stdout)] == [stopped_at + 1]


def test_make_base_and_demo_entry_points_run(tmp_path):
    result = cli("make-base", str(tmp_path / "base"), "--steps", "2", "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "base" / "r1lab_template.txt").exists()
    small = json.dumps({"batch_size": 8, "num_generations": 4, "max_completion_length": 8, "eval_max_prompts": 4})
    result = cli("demo", "--steps", "2", "--base", str(tmp_path / "base"), "--output-dir", str(tmp_path / "demo"),
                 "--metrics-out", str(tmp_path / "demo.jsonl"), "--threads", "1", "--config", small)
    assert result.returncode == 0, result.stderr[-3000:]
    keys = {json.loads(x).get("key") for x in (tmp_path / "demo.jsonl").read_text().splitlines()}
    assert {"rewards/accuracy/mean", "rewards/format/mean", "eval/accuracy", "reflection/frac_responses"} <= keys
