"""`import r1lab_client.wandb as wandb`: a script written the way W&B's quickstart writes one,
changed only by its import line, logs to the real server; a script that crashes marks its run
failed; WANDB_MODE=disabled sends nothing."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r1lab.tracking.models import Point, Run, Sample

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]

# The shape of W&B's quickstart (init with a config, log in the training loop, finish), with a
# GRPO twist: a table of completions. Only the first line differs from a W&B script.
SCRIPT = '''
import r1lab_client.wandb as wandb
import random

# Start a new run to track this script.
run = wandb.init(
    # Set the project where this run will be logged.
    project="grpo-demo",
    name="wandb-style-run",
    # Track hyperparameters and run metadata.
    config={"learning_rate": 1e-6, "num_generations": 2, "epochs": 5},
    tags=["baseline"],
)
wandb.config.update({"beta": 0.04})
run.config.max_completion_length = 256

# Simulate training.
epochs = run.config["epochs"]
offset = random.random() / 5
for epoch in range(epochs):
    reward = 0.2 * epoch
    kl = 0.01 * epoch

    # Log metrics to W&B.
    wandb.log({"reward": reward, "kl": kl, "completions": {"mean_length": 100 + epoch}})

table = wandb.Table(columns=["prompt", "completion", "accuracy", "advantage"])
table.add_data("1+1?", "<think>wait, 1+1 is 2</think><answer>2</answer>", 1.0, 0.7)
table.add_data("1+1?", "<answer>3</answer>", 0.0, -0.7)
wandb.log({"completions": table, "reward": 0.9}, step=10)
run.summary["best_reward"] = 0.9

# Finish the run and upload any remaining data.
wandb.finish()
'''

CRASHES = '''
import r1lab_client.wandb as wandb

wandb.init(project="grpo-demo", name="crashing-run")
wandb.log({"loss": 1.5})
raise RuntimeError("out of memory")
'''


def _run(tmp_path, source: str, env: dict) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "R1LAB_"))}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})


def test_a_wandb_script_logs_to_r1lab_by_changing_its_import(r1lab_url, personal_token, tmp_path):
    done = _run(tmp_path, SCRIPT, {"R1LAB_URL": r1lab_url, "R1LAB_TOKEN": personal_token})
    assert done.returncode == 0, done.stderr
    run = Run.objects.get(name="wandb-style-run")
    assert run.project == "grpo-demo" and run.status == "succeeded" and run.external
    assert run.config == {"learning_rate": 1e-6, "num_generations": 2, "epochs": 5, "beta": 0.04,
                          "max_completion_length": 256, "wandb": {"tags": ["baseline"]}, "summary": {"best_reward": 0.9}}
    points = {(k, s): v for k, s, v in Point.objects.filter(series__run=run).values_list("series__key", "step", "value")}
    # no step given: W&B's counter, one step per call; then step=10
    assert [s for k, s in sorted(points) if k == "reward"] == [0, 1, 2, 3, 4, 10]
    assert points[("reward", 4)] == pytest.approx(0.8) and points[("reward", 10)] == 0.9
    assert points[("completions/mean_length", 3)] == 103.0  # nested dicts are flattened with "/"
    samples = list(Sample.objects.filter(run=run).order_by("group", "index"))
    assert [(s.step, s.group, s.index, s.correct, s.advantage) for s in samples] == [(10, 0, 0, True, 0.7), (10, 0, 1, False, -0.7)]
    assert samples[0].rewards == {"accuracy": 1.0} and samples[0].reflection_count >= 1  # "wait": the aha counter sees it


def test_a_script_that_crashes_marks_its_run_failed(r1lab_url, personal_token, tmp_path):
    done = _run(tmp_path, CRASHES, {"R1LAB_URL": r1lab_url, "R1LAB_TOKEN": personal_token})
    assert done.returncode == 1 and "out of memory" in done.stderr
    run = Run.objects.get(name="crashing-run")
    assert run.status == "failed"
    assert Point.objects.filter(series__run=run, series__key="loss", step=0).exists()


def test_disabled_mode_sends_nothing_and_needs_no_server(tmp_path):
    done = _run(tmp_path, SCRIPT, {"WANDB_MODE": "disabled"})
    assert done.returncode == 0, done.stderr
    assert not Run.objects.exists()


def test_without_a_server_init_says_what_to_set(tmp_path):
    done = _run(tmp_path, SCRIPT, {})
    assert done.returncode == 1 and "set R1LAB_URL and R1LAB_TOKEN" in done.stderr
