"""Stage configs and SPEC.json parsing: what the launch form and the CLI both rely on."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training_backend.config import ConfigError, GRPOConfig, load_spec, parse_spec, spec_fields

ROOT = Path(__file__).resolve().parents[2]


def make_spec(tmp_path, **config):
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"id": "1", "prompt": "1+1", "answer": "2"}\n')
    return {"kind": "grpo", "model_path": str(model), "output_dir": str(tmp_path / "out"),
            "train_data": str(data), "seed": 0, "config": config}


def errors_of(d, **kw):
    with pytest.raises(ConfigError) as info:
        parse_spec(d, **kw)
    return info.value.errors


def test_a_valid_spec_parses_into_frozen_config(tmp_path):
    spec = parse_spec(make_spec(tmp_path, learning_rate=1e-5, num_generations=4, batch_size=16,
                                reward_funcs=["accuracy", "format"]))
    assert isinstance(spec.config, GRPOConfig)
    assert spec.config.learning_rate == 1e-5 and spec.config.reward_funcs == ("accuracy", "format")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.config.beta = 1.0
    assert parse_spec(spec.to_dict()) == spec


def test_bad_fields_are_all_reported_with_their_names(tmp_path):
    d = make_spec(tmp_path, num_generations=1, learning_rate=-1.0, loss_type="ppo", temperature="hot")
    d["model_path"] = str(tmp_path / "missing")
    errors = errors_of(d)
    assert "does not exist" in errors["model_path"]
    assert "loss_type" in errors and "temperature" in errors
    # type/choice errors come first; the cross-field rules run on a well-typed config
    errors = errors_of(make_spec(tmp_path, num_generations=1, learning_rate=-1.0))
    assert "at least 2" in errors["num_generations"]
    assert "negative" in errors["learning_rate"]


def test_batch_must_be_divisible_by_group_size(tmp_path):
    errors = errors_of(make_spec(tmp_path, num_generations=8, batch_size=20))
    assert "divisible" in errors["batch_size"]


def test_unknown_reward_and_unknown_field_are_named(tmp_path):
    errors = errors_of(make_spec(tmp_path, reward_funcs=["accuracy", "vibes"], learnin_rate=1.0))
    assert "learnin_rate" in errors
    errors = errors_of(make_spec(tmp_path, reward_funcs=["accuracy", "vibes"]))
    assert "'vibes'" in errors["reward_funcs"]


def test_unknown_kind_and_missing_keys(tmp_path):
    errors = errors_of({"kind": "ppo"})
    assert "kind" in errors and errors["model_path"] == "required" and errors["train_data"] == "required"


def test_relative_paths_resolve_against_the_spec_file(tmp_path):
    d = make_spec(tmp_path)
    d.update(model_path="model", train_data="prompts.jsonl", output_dir="out")
    (tmp_path / "SPEC.json").write_text(json.dumps(d))
    spec = load_spec(tmp_path / "SPEC.json")
    assert spec.model_path == str(tmp_path / "model")
    with pytest.raises(ConfigError) as info:
        (tmp_path / "bad.json").write_text("{not json")
        load_spec(tmp_path / "bad.json")
    assert "JSON" in info.value.errors["spec"]


def test_every_field_has_help_and_reference_values():
    fields = spec_fields("grpo")
    names = [f.name for f in fields]
    assert names == [f.name for f in dataclasses.fields(GRPOConfig)]
    for f in fields:
        assert f.help and f.default == getattr(GRPOConfig(), f.name)
    by_name = {f.name: f for f in fields}
    assert by_name["num_generations"].r1 == 16 and by_name["num_generations"].trl == 8
    assert by_name["loss_type"].choices == ("grpo", "bnpo", "dapo", "dr_grpo")


def test_config_module_imports_no_torch():
    code = ("import sys, training_backend, training_backend.config as c; c.spec_fields('grpo'); "
            "bad = [m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_rollout_engine_is_a_choice_and_vllm_memory_share_is_checked():
    from training_backend.config import ConfigError, parse_config

    assert parse_config("grpo", {"rollout_engine": "vllm"}).rollout_engine == "vllm"
    with pytest.raises(ConfigError) as bad:
        parse_config("grpo", {"rollout_engine": "sglang"})
    assert set(bad.value.errors) == {"rollout_engine"}
    with pytest.raises(ConfigError) as bad:
        parse_config("grpo", {"rollout_engine": "vllm", "vllm_gpu_memory_utilization": 1.5})
    assert set(bad.value.errors) == {"vllm_gpu_memory_utilization"}
