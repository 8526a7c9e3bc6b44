"""Synthetic GRPO-like curves with every metric the run page draws (shared by the tracking
benchmarks and `python benchmarks/tracking_synth.py` to fill a demo run)."""
from __future__ import annotations

import math
import random

KEYS = [
    "reward", "reward_std", "rewards/accuracy/mean", "rewards/format/mean", "completions/mean_length",
    "completions/min_length", "completions/max_length", "completions/clipped_ratio", "reflection/rate_per_1k_tokens",
    "reflection/frac_responses", "kl", "entropy", "clip_ratio/region_mean", "frac_reward_zero_std", "learning_rate",
    "throughput/tokens_per_s", "eval/pass@1", "eval/cons@k",
]


def step_metrics(step: int, n_steps: int, rng: random.Random, aha_at: float = 0.45) -> dict[str, float]:
    p = step / max(1, n_steps)
    aha = 1.0 if p > aha_at else 0.0
    acc = 0.15 + 0.5 * (1 - math.exp(-4 * p)) + rng.gauss(0, 0.03)
    fmt = min(1.0, 0.3 + 1.5 * p) + rng.gauss(0, 0.02)
    length = 180 + 700 * p + 250 * aha + rng.gauss(0, 20)
    out = {
        "reward": acc + fmt, "reward_std": 0.4 + rng.gauss(0, 0.03), "rewards/accuracy/mean": acc,
        "rewards/format/mean": fmt, "completions/mean_length": length, "completions/min_length": length * 0.3,
        "completions/max_length": min(2048.0, length * 2.1), "completions/clipped_ratio": max(0.0, (length * 2.1 - 2048) / 2048),
        "reflection/rate_per_1k_tokens": 0.6 + 2.4 * aha + rng.gauss(0, 0.25),
        "reflection/frac_responses": 0.08 + 0.35 * aha + rng.gauss(0, 0.03),
        "kl": 0.002 + 0.05 * p + abs(rng.gauss(0, 0.004)), "entropy": 1.2 - 0.5 * p + rng.gauss(0, 0.02),
        "clip_ratio/region_mean": 0.01 + abs(rng.gauss(0, 0.003)), "frac_reward_zero_std": 0.5 - 0.3 * p + rng.gauss(0, 0.03),
        "learning_rate": 1e-6 * min(1.0, step / 50), "throughput/tokens_per_s": 5200 + rng.gauss(0, 150),
    }
    if step % 25 == 0:
        out["eval/pass@1"] = acc * 0.9
        out["eval/cons@k"] = min(1.0, acc * 1.1)
    return out


def run_batches(n_steps: int, seed: int = 0, steps_per_batch: int = 10):
    """Yield log bodies: {"metrics": [...]} for each `steps_per_batch` steps."""
    rng = random.Random(seed)
    batch = []
    for step in range(n_steps):
        for k, v in step_metrics(step, n_steps, rng).items():
            batch.append({"step": step, "key": k, "value": v})
        if (step + 1) % steps_per_batch == 0:
            yield {"metrics": batch}
            batch = []
    if batch:
        yield {"metrics": batch}
