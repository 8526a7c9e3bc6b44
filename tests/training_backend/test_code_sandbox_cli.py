"""The code sandbox from the CLI, for real: `sandbox-check`, and a GRPO stage with the code
reward refused (exit 2) where the sandbox is not full unless its config opts in, with the level
in outputs.json. `R1LAB_SANDBOX=unshare` forces the old mechanism, partial as root."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.training_backend.test_trainer import make_model, make_spec
from training_backend.config import parse_spec
from training_backend.grpo import train
from training_backend.report import MemoryReporter

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
ENV.pop("R1LAB_SANDBOX", None)


def cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "training_backend", *args], cwd=ROOT, env={**ENV, **env},
                          capture_output=True, text=True, timeout=300)


def code_spec(tmp_path, **config) -> Path:
    model = make_model(tmp_path / "base")
    spec = make_spec(tmp_path, model, max_steps=1, reward_funcs=["code", "format"], **config)
    path = tmp_path / "SPEC.json"
    path.write_text(json.dumps(spec))
    return path


def test_sandbox_check_prints_one_line_per_guarantee_and_exits_0_only_when_full():
    result = cli("sandbox-check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("code sandbox: full (mechanism: bwrap")
    assert [line.split()[:2] for line in lines[1:7]] == [
        ["uid:", "ok"], ["filesystem:", "ok"], ["/proc:", "ok"], ["network:", "ok"], ["pids:", "ok"], ["limits:", "ok"]]
    result = cli("sandbox-check", R1LAB_SANDBOX="none")
    assert result.returncode == 1 and result.stdout.startswith("code sandbox: none (mechanism: none")
    assert "runs as the worker's own uid" in result.stdout and "allow_unsandboxed_code" in result.stdout


def test_grpo_with_the_code_reward_exits_2_on_a_partial_sandbox_and_runs_when_opted_in(tmp_path):
    result = cli("run", str(code_spec(tmp_path)), R1LAB_SANDBOX="unshare")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("spec error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("spec error: reward_funcs: ") and "partial" in errors[0]
    assert "filesystem: sees " in errors[0] and "allow_unsandboxed_code" in errors[0]
    assert not (tmp_path / "out" / "outputs.json").exists()

    result = cli("run", str(code_spec(tmp_path, allow_unsandboxed_code=True)), R1LAB_SANDBOX="unshare")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "outputs.json").read_text())["code_sandbox"]
    assert (record["level"], record["mechanism"], record["unsandboxed_allowed"]) == ("partial", "unshare", True)
    assert [m.split(":")[0] for m in record["missing"]] == ["filesystem"]


def test_the_sandbox_level_lands_in_outputs_json(tmp_path, monkeypatch):
    monkeypatch.delenv("R1LAB_SANDBOX", raising=False)
    spec = parse_spec(json.loads(code_spec(tmp_path).read_text()))
    train(spec, MemoryReporter(), progress=lambda line: None)  # in-process: the CLI path is tested above
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert outputs["code_sandbox"] == {"level": "full", "mechanism": "bwrap", "missing": [], "unsandboxed_allowed": False}


def test_sampling_stages_on_rows_with_tests_are_refused_up_front_and_record_the_level(tmp_path, monkeypatch):
    """eval and rejection sampling run model code on prompt rows that carry `tests`: refused before
    a model loads where the sandbox is not full (they were refused only at the first batch), and
    the level lands in their outputs.json too."""
    import pytest

    from training_backend.evaluate import train as eval_train
    from training_backend.rewards.sandbox import SandboxRefused
    from training_backend.tiny import write_jsonl

    rows = [{"id": "1", "prompt": "write f", "answer": "1", "tests": ["assert f() == 1"]}]
    write_jsonl(rows, tmp_path / "prompts.jsonl")
    model = make_model(tmp_path / "base")
    (model / "model.safetensors").rename(model / "hidden")  # a model that cannot load: the refusal comes first
    spec = {"kind": "eval", "model_path": str(model), "output_dir": str(tmp_path / "out"),
            "train_data": str(tmp_path / "prompts.jsonl"), "eval_data": None, "seed": 0,
            "config": {"num_samples": 1, "max_new_tokens": 4, "prompts_per_batch": 1}}
    monkeypatch.setenv("R1LAB_SANDBOX", "unshare")
    with pytest.raises(SandboxRefused):
        eval_train(parse_spec(spec), MemoryReporter(), progress=lambda line: None)
    monkeypatch.delenv("R1LAB_SANDBOX")
    (model / "hidden").rename(model / "model.safetensors")
    eval_train(parse_spec(spec), MemoryReporter(), progress=lambda line: None)
    record = json.loads((tmp_path / "out" / "outputs.json").read_text())["code_sandbox"]
    assert (record["level"], record["mechanism"]) == ("full", "bwrap")
