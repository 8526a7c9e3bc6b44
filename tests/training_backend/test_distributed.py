"""GRPO steps through DeepSpeed on this CPU (gloo, single process): ZeRO-2 with checkpoint/resume,
and ZeRO-3. The first DeepSpeed initialize compiles a small op into TORCH_EXTENSIONS_DIR (~50 s,
once per machine when that folder is kept)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.training_backend.test_trainer import digits, make_model, make_spec  # noqa: F401 (fixture)
from training_backend.config import parse_spec
from training_backend.grpo import train
from training_backend.report import MemoryReporter


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny") / "base")


def test_zero2_steps_match_the_torch_loop_and_resume(tmp_path, model_dir):
    ds, plain = MemoryReporter(), MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "ds", max_steps=2, engine="deepspeed", zero_stage=2)), ds,
          progress=lambda _: None)
    train(parse_spec(make_spec(tmp_path, model_dir, "torch", max_steps=2, engine="torch")), plain,
          progress=lambda _: None)
    # same data, same sampling seeds, same AdamW: DeepSpeed's fp32 ZeRO-2 step is the same update
    assert ds.series("loss") == pytest.approx(plain.series("loss"), rel=1e-4, abs=1e-6)
    assert ds.series("grad_norm")[0] == pytest.approx(plain.series("grad_norm")[0], rel=1e-4)
    a = load_file(tmp_path / "ds" / "final" / "model.safetensors")
    b = load_file(tmp_path / "torch" / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5

    resumed = MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "ds", max_steps=3, engine="deepspeed", zero_stage=2)), resumed,
          resume=True, progress=lambda _: None)
    assert sorted({s for s, _, _ in resumed.metrics}) == [3]
    assert (tmp_path / "ds" / "checkpoints" / "step-000002" / "deepspeed").is_dir()
    assert json.loads((tmp_path / "ds" / "outputs.json").read_text())["step"] == 3


def test_zero3_trains_and_saves_full_weights(tmp_path, model_dir):
    rep = MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "z3", max_steps=1, engine="deepspeed", zero_stage=3, beta=0.0)), rep,
          progress=lambda _: None)
    assert rep.series("grad_norm")[0] > 0
    w = load_file(tmp_path / "z3" / "final" / "model.safetensors")
    before = load_file(model_dir / "model.safetensors")
    assert all(w[k].shape == before[k].shape for k in before)  # gathered, not ZeRO-3 shards
    assert any(not torch.equal(w[k], before[k]) for k in before)


def test_zero2_accumulates_chunks_into_one_update(tmp_path, model_dir, monkeypatch):
    """Each chunk of a minibatch is its own backward (DeepSpeed's accumulation boundary on the last):
    the update equals the plain loop's over the whole minibatch at once."""
    from training_backend import grpo

    ds, plain = MemoryReporter(), MemoryReporter()
    monkeypatch.setattr(grpo, "CHUNK_TOKENS", 1)  # one prompt group per chunk
    train(parse_spec(make_spec(tmp_path, model_dir, "ds", max_steps=2, engine="deepspeed", zero_stage=2)), ds,
          progress=lambda _: None)
    monkeypatch.setattr(grpo, "CHUNK_TOKENS", 10**6)
    train(parse_spec(make_spec(tmp_path, model_dir, "torch", max_steps=2, engine="torch")), plain,
          progress=lambda _: None)
    assert ds.series("loss") == pytest.approx(plain.series("loss"), rel=1e-4, abs=1e-6)
    assert ds.series("grad_norm") == pytest.approx(plain.series("grad_norm"), rel=1e-4)
    a = load_file(tmp_path / "ds" / "final" / "model.safetensors")
    b = load_file(tmp_path / "torch" / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
