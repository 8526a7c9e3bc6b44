"""The run page draws where the time goes (issue 17 part 4): the step's phases as one stacked
panel (areas that add up to the step, its time drawn as a line over them) and the trainer's
system metrics in their own group."""
import pytest

from r1lab.tracking.services import tracked_run_create
from tests.e2e.test_tracking import open_run, post_log

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHASES = {"time/generate": 2.0, "time/reward": 0.25, "time/reference": 0.5, "time/policy_forward": 0.75,
          "time/policy_backward": 1.0, "time/optimizer": 0.25, "time/weight_sync": 0.25}


def test_phases_stack_and_system_metrics_have_their_group(page, live_asgi, login_as):
    run, token = tracked_run_create(name="timed")
    points = [{"step": s, "key": k, "value": v * (1 + s / 10)} for s in range(1, 6) for k, v in PHASES.items()]
    points += [{"step": s, "key": "step_time", "value": 5.1 * (1 + s / 10)} for s in range(1, 6)]
    points += [{"step": s, "key": "system/gpu/0/utilization_percent", "value": 80.0 + s} for s in range(1, 6)]
    post_log(live_asgi, run, token, {"metrics": points})
    login_as("viewer")
    open_run(page, live_asgi, run)
    plot = "[data-panel=step_time] .chart-plot"
    page.wait_for_function(f"document.querySelector('{plot}').data?.some(t => t.name === 'optimizer')")
    traces = page.evaluate(f"""() => document.querySelector('{plot}').data
        .filter(t => t.visible !== false && t.y.length)
        .map(t => ({{name: t.name, stack: t.stackgroup || null, y: t.y}}))""")
    stacked = [t for t in traces if t["stack"]]
    assert [t["name"] for t in stacked] == ["generate", "reward", "reference", "policy forward", "policy backward",
                                            "optimizer", "weight sync"]
    assert len({t["stack"] for t in stacked}) == 1  # one stack per run
    assert [t["name"] for t in traces if not t["stack"]] == ["step"]
    # plotly stacked them: the top of the stack at step 1 is the phases' sum
    tops = page.evaluate(f"""() => {{ const gd = document.querySelector('{plot}');
        return gd.calcdata.filter(cd => cd[0].trace.stackgroup).map(cd => cd[0].s1 ?? cd[0].y); }}""")
    assert tops[-1] == pytest.approx(sum(PHASES.values()) * 1.1)
    # system/*: a group of its own, its panel drawn when opened
    group = page.locator("[data-group='system/']")
    assert group.count() == 1
    page.locator("[data-panel='k-system/gpu/0/utilization_percent']").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector(\"[data-panel='k-system/gpu/0/utilization_percent'] .chart-plot\")"
                           ".data?.[0]?.y.length === 5")
