"""The run page's panels: which metric keys each chart draws (TRL's names, which the trainer uses).

Trainers that log through MLflow, TensorBoard or a W&B-style API keep their own names; the
panels list those too (verl's `critic/score/mean`, `response_length/mean`, `actor/entropy`,
`actor/kl_loss`, … from verl/trainer/ppo/metric_utils.py and its actor; TRL's reward functions
`accuracy_reward` / `format_reward`), so their runs fill the same charts. Data keeps its name.

A trace is `{"key": …}` or `{"prefix": …, "suffix": …}` (every key that matches, at most
MAX_PREFIX_TRACES of them), optionally `"band": <std key>` (mean ± std band), `"y2": true` (right
axis), `"dash": true`, `"stack": true` (stacked with the panel's other stacked traces: parts of a
whole, like the phases of a step).

These panels are a run page's first screen: the page ships their data with its HTML. Every key
that no panel claims is listed in a group by its prefix (the part before the first `/`: `train/`,
`system/`, …; keys without one in "other") and gets a panel of its own that the page fetches and
draws only when it scrolls into view: an RL run logs 1,000–3,000 keys.
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
        {"key": "perf/mfu", "name": "MFU", "y2": True},  # training_backend/telemetry.py (GPUs of a known type)
    ]},
    # Where the time goes: the step's phases stacked (they add up to about step_time, drawn as a
    # line over them); training_backend/grpo.py and telemetry.PhaseTimer report them.
    {"id": "step_time", "title": "Step time (s), by phase", "traces": [
        {"key": "time/generate", "name": "generate", "stack": True},
        {"key": "time/reward", "name": "reward", "stack": True},
        {"key": "time/reference", "name": "reference", "stack": True},
        {"key": "time/policy_forward", "name": "policy forward", "stack": True},
        {"key": "time/policy_backward", "name": "policy backward", "stack": True},
        {"key": "time/optimizer", "name": "optimizer", "stack": True},
        {"key": "time/weight_sync", "name": "weight sync", "stack": True},
        {"key": "step_time", "name": "step", "dash": True},
    ]},
    {"id": "eval", "title": "Eval", "traces": [
        {"key": "eval/pass@1", "name": "pass@1"}, {"key": "eval/cons@k", "name": "cons@k"},
        {"prefix": "eval/", "suffix": ""},
        {"prefix": "val-core/", "suffix": ""},  # verl's validation metrics
    ]},
]


# A prefix rule claims at most this many keys (in key order); the rest are listed in their group.
# The first screen's panels ship with the page: 500 `eval/<task>` keys must not all land in one
# panel's legend and in the page's first response.
MAX_PREFIX_TRACES = 12
# A key's group is the text up to and including its first GROUP_SEPARATOR; keys without one are
# in OTHER_GROUP, listed last.
GROUP_SEPARATOR = "/"
OTHER_GROUP = "other"


def _matches(trace: dict, key: str) -> bool:
    return key.startswith(trace["prefix"]) and key.endswith(trace["suffix"])


def page_rules() -> dict:
    """What a run page needs to place a key that appears live as the server would have (a prefix
    rule's panel while it has room, else its group): the browser reads the rules from here and
    restates none of them (static/js/charts/panels.js)."""
    return {"prefix_rules": prefix_rules(), "max_prefix_traces": MAX_PREFIX_TRACES,
            "group_separator": GROUP_SEPARATOR, "other_group": OTHER_GROUP}


def prefix_rules() -> list[dict]:
    """The prefix rules, numbered as the resolved traces' `rule`, for the page to place a key that
    appears live as the server would have."""
    out = []
    for panel in PANELS:
        for t in panel["traces"]:
            if "prefix" in t:
                out.append({"rule": len(out), "panel": panel["id"], "prefix": t["prefix"], "suffix": t["suffix"],
                            "dash": t.get("dash", False)})
    return out


def panels_for_keys(keys: list[str]) -> list[dict]:
    """The panels with their traces resolved against the run's keys (`keys` of each trace; a trace
    resolved from a prefix rule carries the rule's number as `rule`). Only the panels of PANELS:
    key_groups() lists the keys they leave unclaimed."""
    claimed: set[str] = set()
    out = []
    rule = 0
    for panel in PANELS:
        traces = []
        for t in panel["traces"]:
            if "key" in t:
                traces.append({**t, "keys": [t["key"]]})
                claimed.add(t["key"])
                if t.get("band"):
                    claimed.add(t["band"])
            else:
                matched = [k for k in keys if _matches(t, k) and k not in claimed][:MAX_PREFIX_TRACES]
                for k in matched:
                    claimed.add(k)
                    traces.append({"key": k, "name": k, "dash": t.get("dash", False), "keys": [k], "rule": rule})
                rule += 1
        out.append({"id": panel["id"], "title": panel["title"], "aha": panel.get("aha"), "traces": traces})
    return out


def panel_keys(panels: list[dict]) -> set[str]:
    """Every key the panels draw (trace keys and their std bands)."""
    out: set[str] = set()
    for panel in panels:
        for t in panel["traces"]:
            out.add(t["key"])
            if t.get("band"):
                out.add(t["band"])
    return out


def group_name(key: str) -> str:
    """`train/layer_3/grad_norm` → `train/`; a key without a `/` → "other"."""
    head, sep, _ = key.partition(GROUP_SEPARATOR)
    return head + sep if sep else OTHER_GROUP


def key_groups(keys: list[str], *, claimed: set[str]) -> list[dict]:
    """The keys no panel claims, grouped by prefix: [{"name": "train/", "keys": [...]}, …], groups
    and keys sorted, "other" last."""
    groups: dict[str, list[str]] = {}
    for k in sorted(set(keys) - claimed):
        groups.setdefault(group_name(k), []).append(k)
    order = sorted(groups, key=lambda g: (g == OTHER_GROUP, g))
    return [{"name": g, "keys": groups[g]} for g in order]


def panel_layout(keys: list[str]) -> dict:
    """{"panels": the first screen's panels, "groups": every other key by prefix}."""
    panels = panels_for_keys(keys)
    return {"panels": panels, "groups": key_groups(keys, claimed=panel_keys(panels))}
