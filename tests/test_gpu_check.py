"""benchmarks/gpu_check.py (`make gpu-check`): it refuses clearly without CUDA, and its CPU dry run
drives the same path (GRPO with a reference model, then SFT, both DeepSpeed ZeRO-2 through the
real `python -m training_backend run`) end to end on a tiny Qwen2, in fp32."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_stops_at_once_and_says_why(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r.json")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("no CUDA device: this check needs a GPU")
    assert not (tmp_path / "r.json").exists()


def test_the_cpu_dry_run_trains_both_stages_through_the_cli_and_writes_the_result(tmp_path):
    out = tmp_path / "gpu_check_cpu.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--out", str(out), "--workdir", str(tmp_path / "w")],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["ok"] is True and r["model"]["architecture"] == "Qwen2ForCausalLM"
    for stage in ("grpo", "sft"):
        assert (r[stage]["exit_code"], r[stage]["steps"], r[stage]["timed_steps"]) == (0, 2, 1)
        assert r[stage]["setting"]["engine"] == "deepspeed" and r[stage]["setting"]["zero_stage"] == 2
        assert r[stage]["setting"]["bf16"] is False and r[stage]["median_step_time_s"] > 0
        assert r[stage]["median_tokens_per_s"] > 0 and r[stage]["peak_gpu_memory_gib"] is None
    assert r["grpo"]["setting"]["beta"] > 0 and r["grpo"]["median_time_reference_s"] > 0
    assert (tmp_path / "w" / "grpo" / "outputs.json").exists() and (tmp_path / "w" / "sft" / "outputs.json").exists()
