"""The run page's panels: which metric keys each chart draws (TRL's names, which the trainer uses).

A trace is `{"key": …}` or `{"prefix": …, "suffix": …}` (every key that matches), optionally
`"band": <std key>` (mean ± std band), `"y2": true` (right axis), `"dash": true`.
Keys that no panel claims get a panel of their own under "More metrics".
"""
from __future__ import annotations

PANELS: list[dict] = [
    {"id": "reward", "title": "Reward", "traces": [
        {"key": "reward", "band": "reward_std", "name": "reward (mean ± std)"},
        {"prefix": "rewards/", "suffix": "/mean", "dash": True},
    ]},
    {"id": "accuracy", "title": "Accuracy", "traces": [{"key": "rewards/accuracy/mean", "name": "accuracy"}]},
    {"id": "format", "title": "Format pass rate", "traces": [{"key": "rewards/format/mean", "name": "format"}]},
    {"id": "length", "title": "Response length", "traces": [
        {"key": "completions/mean_length", "name": "mean"},
        {"key": "completions/min_length", "name": "min", "dash": True},
        {"key": "completions/max_length", "name": "max", "dash": True},
        {"key": "completions/clipped_ratio", "name": "clipped ratio", "y2": True},
    ]},
    {"id": "reflection", "title": "Reflection (aha moment)", "aha": "reflection/rate_per_1k_tokens", "traces": [
        {"key": "reflection/rate_per_1k_tokens", "name": "per 1k tokens"},
        {"key": "reflection/frac_responses", "name": "fraction of responses", "y2": True},
    ]},
    {"id": "kl", "title": "KL", "traces": [{"key": "kl"}]},
    {"id": "entropy", "title": "Entropy", "traces": [{"key": "entropy"}]},
    {"id": "clip", "title": "Clip ratios", "traces": [{"prefix": "clip_ratio", "suffix": ""}]},
    {"id": "zero_std", "title": "frac_reward_zero_std", "traces": [{"key": "frac_reward_zero_std"}]},
    {"id": "lr", "title": "Learning rate", "traces": [{"key": "learning_rate"}]},
    {"id": "throughput", "title": "Tokens/s", "traces": [{"key": "throughput/tokens_per_s"}]},
    {"id": "eval", "title": "Eval", "traces": [
        {"key": "eval/pass@1", "name": "pass@1"}, {"key": "eval/cons@k", "name": "cons@k"},
        {"prefix": "eval/", "suffix": ""},
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
