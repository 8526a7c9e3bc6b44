"""The GRPO loop with `rollout_engine="vllm"`: the real VLLMEngine class driven by the loop (over
a stand-in for `vllm.LLM`, since vLLM cannot run on a CPU machine): weights are pushed after every
step, and the sampler's log-probs agree with the trainer's (importance ratio ≈ 1: no stale weights)."""
from types import SimpleNamespace

import pytest

from tests.training_backend.test_rollout_vllm import StandInLLM
from tests.training_backend.test_trainer import digits_reward, make_model, make_spec  # noqa: F401
from training_backend import rollout, models, tiny
from training_backend.config import parse_spec
from training_backend.grpo import train
from training_backend.report import MemoryReporter
from training_backend.rewards import REWARD_FUNCS
from training_backend.rollout_vllm import VLLMEngine


@pytest.fixture(autouse=True)
def digits(monkeypatch):
    monkeypatch.setitem(REWARD_FUNCS, "digits", digits_reward)


def test_grpo_with_the_vllm_engine_pushes_weights_and_reports_sampling_ratios(tmp_path, monkeypatch):
    base = make_model(tmp_path / "base")
    stand_ins = []

    def engine_factory(model_path, **kwargs):
        model, _ = models.load_model_and_tokenizer(model_path)  # what vllm.LLM(model_path) would load
        stand_ins.append(StandInLLM(model.eval()))
        return VLLMEngine(model_path, llm=stand_ins[-1], sampling_params_cls=lambda **kw: SimpleNamespace(**kw), **kwargs)

    monkeypatch.setattr(rollout, "VLLMEngine", engine_factory)
    spec = parse_spec(make_spec(tmp_path, base, max_steps=2, eval_steps=0, beta=0.0, rollout_engine="vllm"))
    rep = MemoryReporter()
    train(spec, rep, template=tiny.TEMPLATE, progress=lambda _: None)

    (llm,) = stand_ins
    # One push per step, one parameter at a time (as under ZeRO-3): every weight, twice.
    pushed = [name for load in llm.loads for name in load]
    names = {n for n, _ in llm.model.named_parameters()}
    assert all(len(load) == 1 for load in llm.loads)
    assert set(pushed) == names and len(pushed) == 2 * len(names)
    # the push is timed as its own phase of the step (issue 17 part 4: the stacked timing panel)
    assert len(rep.series("time/weight_sync")) == 2 and all(t > 0 for t in rep.series("time/weight_sync"))
    ratios = rep.series("sampling/importance_sampling_ratio/mean")
    assert len(ratios) == 2 and all(abs(r - 1) < 0.05 for r in ratios), ratios
