"""The rollout browser in a real browser: reached from a chart click and from the aha marker, a
group of G completions with advantages, the zero-variance filter, send to curation and find the
draft there, long completions collapse, copy, model text stays text; the RS funnel draws."""
import pytest

from r1lab.tracking.selectors import run_aha, run_series_data
from r1lab.tracking.services import tracked_run_create
from tests.e2e.test_tracking import REWARD_PLOT, metrics, open_run, post_log
from tests.rollouts.helpers import XSS, completion, group_samples

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def make_logged_run(base, name="browse-me"):
    run, token = tracked_run_create(name=name)
    post_log(base, run, token, metrics(range(3), f=lambda s: 1.0))
    long_one = [completion(0, True, reflect=True, long=True), completion(1, False), completion(2, True), completion(3, False)]
    post_log(base, run, token, {"samples": group_samples(2, 0, [1.5, 0.5, 1.0, 0.0], completions=long_one) + group_samples(2, 1, [0.5] * 4)})
    return run, token


def test_chart_click_opens_the_step_with_its_groups_then_filter_and_send_to_curation(page, live_asgi, login_as):
    run, _ = make_logged_run(live_asgi)
    login_as("annotator")
    open_run(page, live_asgi, run)
    page.evaluate(f"""() => {{ const gd = document.querySelector('{REWARD_PLOT}');
        gd.emit('plotly_click', {{points: [{{curveNumber: gd.data.findIndex(t => t.name === 'reward (mean ± std)'), pointIndex: 2}}]}}); }}""")
    page.wait_for_url(f"**/rollouts/runs/{run.pk}/steps/2/")

    group = page.locator("[data-group='0']")
    assert group.locator(".completion").count() == 4  # G = 4, side by side
    advantages = group.locator(".c-adv").all_inner_texts()
    assert len(advantages) == 4 and all(a.startswith("A ") for a in advantages)
    assert group.locator(".c-adv.adv-pos").count() == 2 and group.locator(".c-adv.adv-neg").count() == 2
    boxes = [group.locator(".completion").nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] > boxes[0]["x"]  # side by side on a wide screen
    assert group.locator(".think.refl").first.inner_text() == "Wait"

    # long completions collapse; "show all" opens them
    long_card = group.locator(".completion.long").first
    collapsed_h = long_card.locator("pre").bounding_box()["height"]
    long_card.locator("[data-show-all]").click()
    assert "collapsed" not in long_card.get_attribute("class")
    assert long_card.locator("pre").bounding_box()["height"] > collapsed_h * 2

    # filter to zero-variance groups
    page.select_option("select[name=zero_std]", "1")
    page.click("[data-filters] button.primary")
    page.wait_for_url("**zero_std=1**")
    assert page.locator("[data-group]").count() == 1
    zgroup = page.locator("[data-group='1']")
    assert zgroup.locator(".badge.flag-zstd").inner_text() == "zero variance"

    # send one completion to curation, then find it there as a draft
    card = zgroup.locator(".completion").nth(2)
    sample_id = card.get_attribute("data-sample")
    card.locator("[data-send]").click()
    page.wait_for_selector(".msg.success")
    message = page.locator(".msg.success").inner_text()
    assert message.startswith("Sent to curation: example") and "(draft) in Rollout drafts" in message
    assert page.url.endswith(f"#s{sample_id}") and "zero_std=1" in page.url  # back where we were
    page.goto(f"{live_asgi}/curation/p/rollout-drafts/examples/")
    row = page.locator("table tr", has_text="What is 1+1?")
    assert row.count() == 1
    assert "draft" in row.inner_text() and "rollout" in row.inner_text()


def test_completion_with_a_script_tag_renders_as_text(page, live_asgi, login_as):
    run, token = tracked_run_create(name="hostile")
    hostile = f"{XSS} <img src=x onerror=alert(2)></think><answer>{XSS}</answer>"
    post_log(live_asgi, run, token, {"samples": group_samples(0, 0, [1.0, 0.0], completions=[hostile, "fine</think><answer>1</answer>"], prompt=XSS)})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    login_as("viewer")
    page.goto(f"{live_asgi}/rollouts/runs/{run.pk}/steps/0/")
    text = page.locator(".completion").first.locator("[data-text]").inner_text()
    assert text == hostile
    assert page.locator("[data-prompt]").inner_text() == XSS
    assert page.locator("main script, main img").count() == 0
    page.wait_for_timeout(300)  # give an injected handler its chance to fire: none may
    assert dialogs == []


def test_copy_button_copies_the_completion(page, live_asgi, login_as):
    run, _ = make_logged_run(live_asgi, name="copy")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_asgi)
    login_as("viewer")
    page.goto(f"{live_asgi}/rollouts/runs/{run.pk}/steps/2/")
    card = page.locator("[data-group='1'] .completion").first
    card.locator("[data-copy]").click()
    page.wait_for_function("() => document.querySelector(\"[data-group='1'] .completion [data-copy]\").textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == card.locator("[data-text]").inner_text()


def test_narrow_screen_stacks_the_group(page, live_asgi, login_as):
    run, _ = make_logged_run(live_asgi, name="narrow")
    login_as("viewer")
    page.set_viewport_size({"width": 500, "height": 900})
    page.goto(f"{live_asgi}/rollouts/runs/{run.pk}/steps/2/")
    cards = page.locator("[data-group='1'] .completion")
    a, b = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert b["y"] > a["y"] and abs(a["x"] - b["x"]) < 1


def test_aha_marker_opens_the_completions_whose_reflection_rate_moved(page, live_asgi, login_as):
    run, token = tracked_run_create(name="aha")
    rate = {"metrics": [{"step": s, "key": "reflection/rate_per_1k_tokens", "value": 0.5 if s < 10 else 4.0} for s in range(20)]}
    post_log(live_asgi, run, token, rate)
    aha = run_aha(series=run_series_data(run=run)["series"])
    assert aha is not None
    step = aha["step"]
    calm = [f"{i} plain.</think><answer>{i}</answer>" for i in range(4)]
    wavering = [f"Wait, {i}? Let me recheck.</think><answer>{i}</answer>" for i in range(4)]
    post_log(live_asgi, run, token, {"samples": group_samples(step - 1, 0, [1.0, 0.0, 1.0, 0.0], prompt_id="p0", completions=calm)
                                     + group_samples(step, 0, [1.0, 0.0, 1.0, 0.0], prompt_id="p0", completions=wavering)})
    login_as("viewer")
    open_run(page, live_asgi, run)
    page.click(f"a.badge.aha")
    page.wait_for_url(f"**/rollouts/runs/{run.pk}/steps/{step}/?reflection=1")
    panel = page.locator("[data-aha]")
    assert "p0" in panel.inner_text()
    assert "0.00" in panel.inner_text() and "1.00" in panel.inner_text()
    assert page.locator(".completion .think.refl").count() >= 4


def test_rs_funnel_chart_draws(page, live_asgi, login_as, tmp_path):
    from r1lab.rollouts.rs.services import rs_dataset_load
    from tests.rollouts.rs_helpers import make_rs_stage

    stage, made = make_rs_stage(tmp_path)
    rs_dataset_load(stage=stage, user=None)
    login_as("viewer")
    page.goto(f"{live_asgi}/rollouts/rs/{stage.pk}/")
    page.wait_for_selector("[data-funnel-chart][data-ready='1']")
    data = page.evaluate("() => document.querySelector('[data-funnel-chart]').data[0]")
    assert data["type"] == "funnel" and data["x"][0] == 11 and data["x"][-1] == made["funnel"]["kept"]
    page.click("text=readability (1)")
    assert "removed by readability" in page.locator(".results").inner_text()
