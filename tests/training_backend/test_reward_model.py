"""The Bradley–Terry reward model: the loss by hand, a real (tiny) model trained on preference
pairs, and its scores as the `reward_model` reward routed by prompt type."""

import json
import math

import pytest
import torch

from tests.training_backend.stage_factories import make_model, outputs, preference_rows, spec, worked_completion, write_jsonl, write_spec
from training_backend import tiny
from training_backend.__main__ import main
from training_backend.config import ConfigError, parse_config
from training_backend.reward_model import RewardModelScorer, bradley_terry_loss
from training_backend.rewards import REWARD_FUNCS


def test_bradley_terry_loss_by_hand():
    c, r = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    loss, stats = bradley_terry_loss(c, r)
    logsig = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    assert float(loss) == pytest.approx(-(logsig(2) + logsig(0) + logsig(-2)) / 3)
    assert stats["accuracy"] == pytest.approx(1 / 3) and stats["margin"] == pytest.approx(0.0)
    centred, _ = bradley_terry_loss(c, r, center_coef=0.1)
    assert float(centred - loss) == pytest.approx(0.1 * (4 + 0 + 0) / 3)


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    model = make_model(tmp / "base")
    train_data = write_jsonl(preference_rows(48, seed=1), tmp / "pairs.jsonl")
    eval_data = write_jsonl(preference_rows(16, seed=2), tmp / "held.jsonl")
    s = spec("reward_model", model, tmp / "out", train_data, eval_data, max_steps=30, batch_size=8, learning_rate=2e-3,
             lr_scheduler="constant", engine="torch", torch_threads=1, max_seq_length=96, save_steps=15)
    rc = main(["run", str(write_spec(s, tmp / "spec.json")), "--metrics-out", str(tmp / "metrics.jsonl")])
    assert rc == 0
    return tmp


def test_the_stage_learns_the_preference_and_writes_a_loadable_model(trained_rm):
    out = outputs(trained_rm / "out")
    assert out["kind"] == "reward_model" and out["status"] == "succeeded"
    assert out["summary"]["eval/accuracy"] >= 0.9
    metrics = [json.loads(x) for x in (trained_rm / "metrics.jsonl").read_text().splitlines()]
    keys = {m.get("key") for m in metrics}
    assert {"loss", "accuracy", "margin", "grad_norm", "learning_rate", "eval/loss", "eval/accuracy"} <= keys
    losses = [m["value"] for m in metrics if m.get("key") == "loss"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    scorer = RewardModelScorer(out["final_model"])
    assert scorer.render.kind == "template" and scorer.render.template == tiny.TEMPLATE
    good, bad = scorer.score(["12+30", "12+30"], [worked_completion(12, 30), "43"])
    assert good > bad


def test_reward_model_reward_scores_general_rows_and_skips_the_others(trained_rm):
    path = outputs(trained_rm / "out")["final_model"]
    completions = [worked_completion(12, 30), "43", worked_completion(12, 30)]
    got = REWARD_FUNCS["reward_model"](completions, prompts=["12+30"] * 3, type=["general", "general", "math"],
                                       reward_model_path=path, reward_model_types=["general"])
    assert got[2] is None and got[0] > got[1]
    with pytest.raises(ValueError, match="reward_model_path"):
        REWARD_FUNCS["reward_model"](completions, prompts=["x"] * 3)


def test_grpo_config_names_the_reward_model():
    with pytest.raises(ConfigError) as info:
        parse_config("grpo", {"reward_funcs": ["accuracy", "format", "reward_model"]})
    assert "reward_model_path" in info.value.errors
    cfg = parse_config("grpo", {"reward_funcs": ["accuracy", "format", "reward_model"], "reward_model_path": "rm/final",
                                "reward_model_types": ["general", "chat"]})
    assert cfg.reward_model_types == ("general", "chat")
