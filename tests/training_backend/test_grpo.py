"""group_advantages and grpo_loss against a float64 re-derivation written token by token."""

import math

import pytest
import torch

from training_backend.data import prompts_for_step
from training_backend.grpo import group_advantages, grpo_loss

LOSS_TYPES = ["grpo", "bnpo", "dapo", "dr_grpo"]


def reference_advantages(rewards: list[float], G: int, scale: bool, eps: float) -> list[float]:
    out = []
    for g in range(0, len(rewards), G):
        grp = rewards[g:g + G]
        mean = sum(grp) / G
        std = math.sqrt(sum((x - mean) ** 2 for x in grp) / (G - 1))
        out += [(x - mean) / (std + eps) if scale else x - mean for x in grp]
    return out


def reference_loss(logp, old, ref, adv, mask, clip_eps, clip_eps_high, beta, loss_type):
    """Plain-Python float64 loops over every token."""
    B, T = len(logp), len(logp[0])
    hi = clip_eps if clip_eps_high is None else clip_eps_high
    per = [[0.0] * T for _ in range(B)]
    for i in range(B):
        for t in range(T):
            rho = math.exp(logp[i][t] - old[i][t])
            clipped = min(max(rho, 1 - clip_eps), 1 + hi)
            v = -min(rho * adv[i], clipped * adv[i])
            if beta:
                d = ref[i][t] - logp[i][t]
                v += beta * (math.exp(d) - d - 1)
            per[i][t] = v
    if loss_type == "grpo":
        return sum(sum(per[i][t] * mask[i][t] for t in range(T)) / max(sum(mask[i]), 1) for i in range(B)) / B
    total = sum(per[i][t] * mask[i][t] for i in range(B) for t in range(T))
    if loss_type in ("bnpo", "dapo"):
        return total / sum(map(sum, mask))
    return total / (B * T)


def make_batch(B=6, T=7, seed=0, spread=0.5):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    old = logp + (torch.rand(B, T, generator=g, dtype=torch.float64) - 0.5) * spread  # ratios away from 1
    ref = logp + (torch.rand(B, T, generator=g, dtype=torch.float64) - 0.5)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("G", [2, 4, 8])
def test_group_advantages_match_the_formula(G, scale):
    rewards = torch.rand(3 * G, generator=torch.Generator().manual_seed(G), dtype=torch.float64)
    got = group_advantages(rewards, G, scale_rewards=scale, eps=1e-4)
    want = reference_advantages(rewards.tolist(), G, scale, 1e-4)
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-12)


def test_group_advantages_are_zero_when_a_group_agrees():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    adv = group_advantages(rewards, 4)
    assert adv[:4].abs().max() == 0
    assert adv[4:].sum().abs() < 1e-6 and adv[5] > 0 > adv[4]


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("clip", [(0.2, None), (0.2, 0.28), (10.0, None)])
def test_grpo_loss_matches_float64_rederivation(loss_type, beta, clip):
    logp, old, ref, adv, mask = make_batch(seed=hash((loss_type, beta, clip)) % 1000)
    loss, stats = grpo_loss(logp, old, ref if beta else None, adv, mask, clip_eps=clip[0], clip_eps_high=clip[1],
                            beta=beta, loss_type=loss_type)
    want = reference_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(),
                          clip[0], clip[1], beta, loss_type)
    assert loss.dtype == torch.float64
    assert abs(loss.item() - want) < 1e-12
    for k in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "kl"):
        assert k in stats


def test_kl_stat_is_the_masked_mean_of_k3():
    logp, old, ref, adv, mask = make_batch(seed=3)
    _, stats = grpo_loss(logp, old, ref, adv, mask, beta=0.1)
    d = ref - logp
    k3 = torch.exp(d) - d - 1
    assert abs(stats["kl"] - float((k3 * mask).sum() / mask.sum())) < 1e-12
    assert stats["kl"] > 0


def test_clip_ratios_count_the_clipped_tokens():
    logp = torch.zeros(2, 3, dtype=torch.float64)
    old = torch.log(torch.tensor([[1 / 1.5, 1.0, 1 / 0.5], [1 / 1.5, 1 / 0.5, 1.0]], dtype=torch.float64))  # ρ = 1.5,1,0.5
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.ones(2, 3, dtype=torch.float64)
    _, stats = grpo_loss(logp, old, None, adv, mask, clip_eps=0.2, beta=0.0)
    # row 0 (A>0): ρ=1.5 clipped high; row 1 (A<0): ρ=0.5 clipped low
    assert stats["clip_ratio/high_mean"] == pytest.approx(1 / 6)
    assert stats["clip_ratio/low_mean"] == pytest.approx(1 / 6)
    assert stats["clip_ratio/region_mean"] == pytest.approx(2 / 6)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradient_matches_finite_differences(loss_type):
    logp, old, ref, adv, mask = make_batch(B=3, T=4, seed=7, spread=0.1)
    logp.requires_grad_(True)

    def f(x):
        return grpo_loss(x, old, ref, adv, mask, beta=0.04, loss_type=loss_type, clip_eps_high=0.3)[0]

    assert torch.autograd.gradcheck(f, (logp,), eps=1e-7, atol=1e-8)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_masked_tokens_get_zero_gradient(loss_type):
    logp, old, ref, adv, mask = make_batch(seed=11)
    logp.requires_grad_(True)
    loss, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type=loss_type)
    loss.backward()
    assert logp.grad[mask == 0].abs().max() == 0
    assert logp.grad[mask == 1].abs().max() > 0


def test_on_policy_gradient_is_the_advantage_weighted_score():
    """With old == logp.detach() (num_iterations=1) the ratio is 1 and the gradient is -A/|o| per token."""
    logp, _, _, adv, mask = make_batch(seed=5)
    logp.requires_grad_(True)
    loss, stats = grpo_loss(logp, logp.detach(), None, adv, mask, beta=0.0, loss_type="grpo")
    loss.backward()
    want = -adv[:, None] * mask / mask.sum(1, keepdim=True) / mask.shape[0]
    assert torch.allclose(logp.grad, want, atol=1e-12)
    assert stats["clip_ratio/region_mean"] == 0


def test_reference_is_required_only_with_kl():
    logp, old, ref, adv, mask = make_batch()
    grpo_loss(logp, old, None, adv, mask, beta=0.0)
    with pytest.raises(ValueError):
        grpo_loss(logp, old, None, adv, mask, beta=0.04)


def test_prompt_order_is_a_reproducible_function_of_the_step():
    first = [prompts_for_step(10, 4, s, seed=1) for s in range(6)]
    assert first == [prompts_for_step(10, 4, s, seed=1) for s in range(6)]
    flat = [i for s in first for i in s]
    assert sorted(flat[:10]) == list(range(10))  # every row once per epoch
    assert first != [prompts_for_step(10, 4, s, seed=2) for s in range(6)]
