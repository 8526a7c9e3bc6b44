"""The run page's panel rules: the first screen's panels, and every other key grouped by prefix."""
from r1lab.tracking.panels import MAX_PREFIX_TRACES, panel_keys, panel_layout, prefix_rules


def test_unclaimed_keys_are_grouped_by_prefix_other_last():
    layout = panel_layout(["reward", "kl", "train/loss", "train/a/b", "system/gpu0", "zeta", "alpha", "rewards/fmt/std"])
    assert [p["id"] for p in layout["panels"]][:3] == ["reward", "accuracy", "format"]  # every known panel, data or not
    assert layout["groups"] == [
        {"name": "rewards/", "keys": ["rewards/fmt/std"]},  # rewards/*/mean is the reward panel's; /std is not
        {"name": "system/", "keys": ["system/gpu0"]},
        {"name": "train/", "keys": ["train/a/b", "train/loss"]},
        {"name": "other", "keys": ["alpha", "zeta"]},
    ]


def test_a_prefix_rule_claims_at_most_max_prefix_traces_keys():
    # 500 eval/<task> keys: the eval panel takes its two named keys and MAX_PREFIX_TRACES others,
    # the rest are listed in eval/ (before: all 500 in one panel, shipped with the page)
    tasks = [f"eval/task_{i:03d}" for i in range(500)]
    layout = panel_layout(["eval/pass@1", "eval/cons@k", *tasks])
    ev = next(p for p in layout["panels"] if p["id"] == "eval")
    assert [t["key"] for t in ev["traces"]] == ["eval/pass@1", "eval/cons@k", *tasks[:MAX_PREFIX_TRACES]]
    rule = next(r["rule"] for r in prefix_rules() if r["panel"] == "eval")
    assert {t.get("rule") for t in ev["traces"][2:]} == {rule}
    assert layout["groups"] == [{"name": "eval/", "keys": tasks[MAX_PREFIX_TRACES:]}]
    assert len(panel_keys(layout["panels"]) & set(tasks)) == MAX_PREFIX_TRACES


def test_the_page_places_live_keys_by_these_rules_and_restates_none():
    # Issue 16: the run page placed a key that appears live with its own copy of group_name ("/",
    # "other") and of MAX_PREFIX_TRACES ("|| 12"). The rules now come with the page data.
    from pathlib import Path

    from r1lab.tracking.panels import page_rules

    assert page_rules() == {"prefix_rules": prefix_rules(), "max_prefix_traces": MAX_PREFIX_TRACES,
                            "group_separator": "/", "other_group": "other"}
    code = [line for p in (Path(__file__).resolve().parents[2] / "static" / "js").rglob("*.js")
            for line in p.read_text().splitlines() if not line.strip().startswith("//")]  # comments may name them
    js = "\n".join(code)
    for literal in ['"other"', "|| 12", *{f'"{r["prefix"]}"' for r in prefix_rules()}]:
        assert literal not in js, literal


def test_the_step_phases_are_one_stacked_panel_and_system_metrics_their_own_group():
    """Issue 17 part 4: where the time goes. Before, the phases were four unrelated panels of the
    time/ group and step_time one of `other`; MFU was nowhere."""
    keys = ["time/generate", "time/reward", "time/reference", "time/policy_forward", "time/policy_backward",
            "time/optimizer", "time/weight_sync", "time/train", "step_time", "perf/mfu",
            "system/cpu_percent", "system/gpu/0/utilization_percent", "system/gpu/0/power_w"]
    layout = panel_layout(keys)
    panel = next(p for p in layout["panels"] if p["id"] == "step_time")
    stacked = [t["key"] for t in panel["traces"] if t.get("stack")]
    assert stacked == ["time/generate", "time/reward", "time/reference", "time/policy_forward",
                       "time/policy_backward", "time/optimizer", "time/weight_sync"]
    assert [t["key"] for t in panel["traces"] if not t.get("stack")] == ["step_time"]  # the whole, as a line
    throughput = next(p for p in layout["panels"] if p["id"] == "throughput")
    assert {"key": "perf/mfu", "name": "MFU", "y2": True, "keys": ["perf/mfu"]} in throughput["traces"]
    assert layout["groups"] == [
        {"name": "system/", "keys": ["system/cpu_percent", "system/gpu/0/power_w", "system/gpu/0/utilization_percent"]},
        {"name": "time/", "keys": ["time/train"]},  # the sum of four of the stacked phases: not stacked again
    ]
