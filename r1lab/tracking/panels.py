"""The run page's panels: which metric keys each chart draws (TRL's names, which the trainer uses).

Trainers that log through MLflow, TensorBoard or a W&B-style API keep their own names; the
panels list those too (verl's `critic/score/mean`, `response_length/mean`, `actor/entropy`,
`actor/kl_loss`, … from verl/trainer/ppo/metric_utils.py and its actor; TRL's reward functions
`accuracy_reward` / `format_reward`), so their runs fill the same charts. Data keeps its name.

A trace is `{"key": …}` or `{"prefix": …, "suffix": …}` (every key that matches), optionally
`"band": <std key>` (mean ± std band), `"y2": true` (right axis), `"dash": true`.
Keys that no panel claims get a panel of their own under "More metrics".
"""
from __future__ import annotations

PANELS: list[dict] = [
    {"id": "reward", "title": "Reward", "traces": [
        {"key": "reward", "band": "reward_std", "name": "reward (mean ± std)"},
        {"prefix": "rewards/", "suffix": "/mean", "dash": True},
        {"key": "critic/score/mean", "name": "score (mean)"},  # verl: the reward functions' sum
        {"key": "critic/rewards/mean", "name": "reward − KL penalty (mean)", "dash": True},  # verl
    ]},
    {"id": "accuracy", "title": "Accuracy", "traces": [
        {"key": "rewards/accuracy/mean", "name": "accuracy"},
        {"key": "rewards/accuracy_reward/mean", "name": "accuracy_reward"},  # TRL's reward function name
    ]},
    {"id": "format", "title": "Format pass rate", "traces": [
        {"key": "rewards/format/mean", "name": "format"},
        {"key": "rewards/format_reward/mean", "name": "format_reward"},  # TRL's reward function name
    ]},
    {"id": "length", "title": "Response length", "traces": [
        {"key": "completions/mean_length", "name": "mean"},
        {"key": "completions/min_length", "name": "min", "dash": True},
        {"key": "completions/max_length", "name": "max", "dash": True},
        {"key": "completions/clipped_ratio", "name": "clipped ratio", "y2": True},
        {"key": "response_length/mean", "name": "mean"},  # verl
        {"key": "response_length/min", "name": "min", "dash": True},
        {"key": "response_length/max", "name": "max", "dash": True},
        {"key": "response_length/clip_ratio", "name": "clipped ratio", "y2": True},
    ]},
    {"id": "reflection", "title": "Reflection (aha moment)", "aha": "reflection/rate_per_1k_tokens", "traces": [
        {"key": "reflection/rate_per_1k_tokens", "name": "per 1k tokens"},
        {"key": "reflection/frac_responses", "name": "fraction of responses", "y2": True},
    ]},
    {"id": "kl", "title": "KL", "traces": [
        {"key": "kl"},
        {"key": "actor/kl_loss", "name": "kl_loss (to the reference)"},  # verl, use_kl_loss
        {"key": "critic/kl", "name": "kl in reward", "dash": True},  # verl, use_kl_in_reward
    ]},
    {"id": "entropy", "title": "Entropy", "traces": [{"key": "entropy"}, {"key": "actor/entropy", "name": "entropy"}]},
    {"id": "clip", "title": "Clip ratios", "traces": [
        {"prefix": "clip_ratio", "suffix": ""},
        {"key": "actor/pg_clipfrac", "name": "pg_clipfrac"},  # verl
        {"key": "actor/pg_clipfrac_lower", "name": "pg_clipfrac_lower", "dash": True},
    ]},
    {"id": "zero_std", "title": "frac_reward_zero_std", "traces": [{"key": "frac_reward_zero_std"}]},
    {"id": "lr", "title": "Learning rate", "traces": [{"key": "learning_rate"}, {"key": "actor/lr", "name": "lr"}]},
    {"id": "throughput", "title": "Tokens/s", "traces": [
        {"key": "throughput/tokens_per_s"},
        {"key": "perf/throughput", "name": "tokens/s per GPU"},  # verl
    ]},
    {"id": "eval", "title": "Eval", "traces": [
        {"key": "eval/pass@1", "name": "pass@1"}, {"key": "eval/cons@k", "name": "cons@k"},
        {"prefix": "eval/", "suffix": ""},
        {"prefix": "val-core/", "suffix": ""},  # verl's validation metrics
    ]},
]


def _matches(trace: dict, key: str) -> bool:
    if "key" in trace:
        return trace["key"] == key or trace.get("band") == key
    return key.startswith(trace["prefix"]) and key.endswith(trace["suffix"])


def panels_for_keys(keys: list[str]) -> list[dict]:
    """The panels with their traces resolved against the run's keys (`keys` of each trace),
    then one panel per unclaimed key."""
    claimed: set[str] = set()
    out = []
    for panel in PANELS:
        traces = []
        for t in panel["traces"]:
            if "key" in t:
                traces.append({**t, "keys": [t["key"]]})
                claimed.add(t["key"])
                if t.get("band"):
                    claimed.add(t["band"])
            else:
                matched = [k for k in keys if _matches(t, k) and k not in claimed]
                for k in matched:
                    claimed.add(k)
                    traces.append({"key": k, "name": k, "dash": t.get("dash", False), "keys": [k]})
        out.append({"id": panel["id"], "title": panel["title"], "aha": panel.get("aha"), "traces": traces})
    for k in sorted(set(keys) - claimed):
        out.append({"id": "k-" + k, "title": k, "aha": None, "traces": [{"key": k, "name": k, "keys": [k]}], "extra": True})
    return out
