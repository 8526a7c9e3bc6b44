"""bf16 on GPUs, fp32 everywhere else: the config field the launch form shows, the DeepSpeed config
it becomes, the refusal on a machine without CUDA, and what stays as it was (fp32 by default, no
memory metric on a CPU). The GPU side itself is benchmarks/gpu_check.py on a CUDA machine."""
from __future__ import annotations

import pytest
import torch

from training_backend.config import ConfigError, parse_config, spec_fields
from training_backend.distributed import OptimConfig, deepspeed_config, peak_memory_metrics, setup_backend
from training_backend.rollout import Rollout

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks this CPU machine's refusals")


@pytest.mark.parametrize("kind", ["grpo", "sft", "reward_model"])
def test_bf16_is_a_deepspeed_option_off_by_default(kind):
    assert parse_config(kind, {}).bf16 is False
    assert parse_config(kind, {"bf16": True}).bf16 is True  # engine defaults to deepspeed
    with pytest.raises(ConfigError) as exc:
        parse_config(kind, {"bf16": True, "engine": "torch"})
    assert exc.value.errors == {"bf16": "needs engine=deepspeed (the torch loop trains in fp32)"}
    field = next(f for f in spec_fields(kind) if f.name == "bf16")  # the launch form's field
    assert (field.type, field.default, field.trl) == ("bool", False, True)


def test_the_deepspeed_config_is_fp32_unless_bf16():
    fp32 = deepspeed_config(micro_batch_size=8, max_grad_norm=1.0, zero_stage=2, bf16=False)
    assert fp32 == {  # what DeepSpeedBackend passed before bf16 existed
        "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True, "steps_per_print": 10**9,
        "wall_clock_breakdown": False}
    assert deepspeed_config(micro_batch_size=8, max_grad_norm=1.0, zero_stage=2, bf16=True) == {
        **fp32, "bf16": {"enabled": True}}


@no_cuda
def test_bf16_without_cuda_is_refused_before_deepspeed_starts_and_no_gpu_metric_is_made_up():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError) as exc:
        setup_backend(model, OptimConfig(), engine="deepspeed", bf16=True)
    assert "needs a CUDA device" in exc.value.errors["bf16"]
    assert peak_memory_metrics() == {}
    assert setup_backend(model, OptimConfig(), engine="torch").device == torch.device("cpu")


def test_a_rollout_moves_whole_to_the_trainers_device():
    roll = Rollout(prompt_ids=torch.ones(2, 3, dtype=torch.long), prompt_mask=torch.ones(2, 3, dtype=torch.long),
                   completion_ids=torch.ones(2, 4, dtype=torch.long), completion_mask=torch.ones(2, 4, dtype=torch.long),
                   truncated=torch.zeros(2, dtype=torch.bool))
    moved = roll.to(torch.device("meta"))
    assert {t.device.type for t in (moved.prompt_ids, moved.prompt_mask, moved.completion_ids, moved.completion_mask,
                                    moved.truncated)} == {"meta"}
    assert moved.sampling_logprobs is None and moved.lengths.shape == (2,)
