"""The GRPO loop for real on a tiny random Llama: metrics, samples, checkpoints, resume."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training_backend import models, tiny
from training_backend.config import parse_spec
from training_backend.grpo import train
from training_backend.stage import checkpoint_dirs
from training_backend.report import MemoryReporter
from training_backend.rewards import REWARD_FUNCS

# Random weights rarely emit EOS, so most completions are max_completion_length long and the rule
# rewards are all 0; `digits` (the share of digits in a completion, registered for these tests
# only) varies within a group, which gives non-zero advantages and real gradients.
TINY = dict(num_generations=4, batch_size=8, max_completion_length=12, max_prompt_length=16,
            learning_rate=1e-3, beta=0.04, reward_funcs=["format", "digits"], save_steps=2,
            save_total_limit=0, log_samples=-1, engine="torch", torch_threads=1)


def make_model(path: Path) -> Path:
    if not (path / "config.json").exists():
        model, tok = tiny.build_model(seed=0, num_hidden_layers=2, hidden_size=64, intermediate_size=128)
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return path


def make_spec(tmp: Path, model: Path, out: str = "out", **config) -> dict:
    data = tmp / "prompts.jsonl"
    if not data.exists():
        tiny.write_jsonl(tiny.arithmetic_prompts(6, seed=3), data)
    return {"kind": "grpo", "model_path": str(model), "output_dir": str(tmp / out), "train_data": str(data),
            "seed": 1, "config": {**TINY, **config}}


def digits_reward(completions, **_):
    return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]


@pytest.fixture(autouse=True)
def digits(monkeypatch):
    monkeypatch.setitem(REWARD_FUNCS, "digits", digits_reward)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny") / "base")


def test_a_few_steps_report_trl_metrics_samples_and_outputs(tmp_path, model_dir):
    spec = parse_spec(make_spec(tmp_path, model_dir, max_steps=2, eval_steps=0))
    rep, lines = MemoryReporter(), []
    result = train(spec, rep, template=tiny.TEMPLATE, progress=lines.append)
    keys = {k for _, k, _ in rep.metrics}
    for k in ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "rewards/format/mean",
              "rewards/digits/std", "frac_reward_zero_std", "completions/mean_length", "completions/min_length",
              "completions/max_length", "completions/clipped_ratio", "kl", "entropy", "clip_ratio/low_mean",
              "clip_ratio/high_mean", "clip_ratio/region_mean", "step_time", "num_tokens", "time/generate",
              "time/train", "throughput/tokens_per_s", "reflection/rate_per_1k_tokens", "reflection/frac_responses"):
        assert k in keys, k
    assert all(0.5 <= r <= 1 for r in rep.series("completions/clipped_ratio"))  # EOS is rare, not impossible
    assert rep.series("grad_norm")[0] > 0
    assert len(rep.samples) == 16 and {s["group"] for _, s in rep.samples} == {0, 1}
    # each completion's position in its group: the rollout browser's label and ingest's identity
    assert sorted((s["group"], s["index"]) for step, s in rep.samples if step == 1) == [(g, i) for g in (0, 1) for i in range(4)]
    sample = rep.samples[0][1]
    assert set(sample) >= {"prompt", "completion", "think", "answer", "rewards", "advantage", "length", "truncated", "group"}
    assert all(s["truncated"] == (s["length"] == 12) for _, s in rep.samples)
    assert [json.loads(x.split(" ", 1)[1])["step"] for x in lines] == [1, 2]
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert outputs["status"] == "succeeded" and outputs["step"] == 2
    final = Path(outputs["final_model"])
    model, tok = models.load_model_and_tokenizer(final)  # a self-contained HF folder
    assert result.final_model == str(final) and not (final / "optimizer.pt").exists()


def test_resume_continues_with_the_same_numbers(tmp_path, model_dir):
    straight, first = MemoryReporter(), MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "a", max_steps=4)), straight, progress=lambda _: None)
    # same run, stopped after step 2 (as after a SIGTERM) and resumed from its checkpoint
    train(parse_spec(make_spec(tmp_path, model_dir, "b", max_steps=2)), first, progress=lambda _: None)
    second = MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "b", max_steps=4)), second, resume=True, progress=lambda _: None)
    assert sorted({s for s, _, _ in second.metrics}) == [3, 4]
    assert straight.rewinds == [-1] and second.rewinds == [2]  # the dashboard rewinds to the checkpoint
    for key in ("loss", "reward", "kl", "completions/mean_length"):
        assert second.series(key) == pytest.approx(straight.series(key)[2:], rel=1e-5, abs=1e-7), key
    wa = load_file(tmp_path / "a" / "final" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "final" / "model.safetensors")
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    assert [p.name for p in checkpoint_dirs(tmp_path / "b")] == ["step-000002", "step-000004"]


def test_multiple_minibatches_and_iterations_use_old_logprobs(tmp_path, model_dir):
    rep = MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, max_steps=1, minibatches=2, num_iterations=2,
                               loss_type="dapo", clip_eps_high=0.28)), rep, progress=lambda _: None)
    assert len(rep.series("loss")) == 1 and rep.series("learning_rate") == [1e-3]


def test_a_save_cut_short_is_not_a_checkpoint(tmp_path):
    """kill -9 between writing trainer_state.json and the rename leaves step-N.tmp: resume must
    ignore it (and not crash on its name)."""
    root = tmp_path / "checkpoints"
    for name in ("step-000002", "step-000010", "step-000011.tmp"):
        (root / name).mkdir(parents=True)
        (root / name / "trainer_state.json").write_text("{}")
    (root / "step-000012").mkdir()  # no trainer_state.json: incomplete too
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-000002", "step-000010"]
