"""The run page in a real browser: charts draw, gain points live, back-fill after a lost socket,
open a step's rollouts on click, and reopen exactly from a permalink."""
import json
import urllib.request

import pytest

from r1lab.tracking.models import Comment
from r1lab.tracking.services import tracked_run_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REWARD_PLOT = "[data-panel=reward] .chart-plot"


def post_log(base, run, token, body):
    req = urllib.request.Request(f"{base}/api/v1/runs/{run.pk}/log", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def metrics(steps, key="reward", f=lambda s: s / 10):
    return {"metrics": [{"step": s, "key": key, "value": f(s)} for s in steps]}


def reward_points(page):
    # the raw reward trace: x values plotly holds, and the drawn SVG path
    return page.evaluate(f"""() => {{
        const gd = document.querySelector('{REWARD_PLOT}');
        const i = gd.data.findIndex(t => t.name && t.name.startsWith('reward'));
        const path = gd.querySelectorAll('.scatterlayer .trace path.js-line')[i >= 0 ? 0 : 0];
        return {{x: gd.data[i].x.slice(), d: path ? path.getAttribute('d') : null}};
    }}""")


def open_run(page, base, run, query=""):
    page.goto(f"{base}/metrics/runs/{run.pk}/{query}")
    page.wait_for_selector("[data-r1-charts][data-ready='1']")
    page.wait_for_selector("[data-live]:has-text('live')")


def test_chart_visibly_gains_a_point_when_one_is_posted(page, live_asgi, login_as):
    run, token = tracked_run_create(name="live-run")
    post_log(live_asgi, run, token, metrics(range(10)))
    login_as("viewer")
    open_run(page, live_asgi, run)
    before = reward_points(page)
    assert before["x"] == list(range(10))
    assert page.locator("[data-panel=reward] .chart-info").inner_text() == "10 points"
    post_log(live_asgi, run, token, metrics([10], f=lambda s: 5.0))
    page.wait_for_function(f"document.querySelector('{REWARD_PLOT}').data.some(t => t.x.length === 11)")
    after = reward_points(page)
    assert after["x"] == list(range(11))
    assert after["d"] != before["d"]  # the drawn line changed
    assert page.locator("[data-panel=reward] .chart-info").inner_text() == "11 points"


def test_lost_socket_backfills_what_it_missed(page, live_asgi, login_as):
    run, token = tracked_run_create(name="flaky-net")
    post_log(live_asgi, run, token, metrics(range(5)))
    login_as("viewer")
    open_run(page, live_asgi, run)
    # drop the socket without the automatic reconnect, post while deaf, then reconnect
    page.evaluate(f"""() => {{ const c = document.querySelector('[data-r1-charts]').__charts;
        const ws = c.sockets[{run.pk}]; ws.onclose = null; ws.close(); }}""")
    post_log(live_asgi, run, token, metrics([5, 6, 7]))
    # …and keys first logged while deaf: found through keys.json, a first-screen one fetched, another listed
    post_log(live_asgi, run, token, {"metrics": [{"step": 6, "key": "kl", "value": 0.5}, {"step": 6, "key": "train/loss", "value": 2}]})
    page.evaluate(f"() => document.querySelector('[data-r1-charts]').__charts.connect({run.pk}, false)")
    page.wait_for_function(f"document.querySelector('{REWARD_PLOT}').data.some(t => t.x.length === 8)")
    assert reward_points(page)["x"] == list(range(8))
    page.wait_for_function("document.querySelector('[data-panel=kl] .chart-plot').data.some(t => t.x.join() === '6')")
    assert page.locator("[data-group]").evaluate_all("els => els.map(e => e.dataset.group)") == ["train/"]
    page.locator("[data-panel='k-train/loss']").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector(\"[data-panel='k-train/loss'] .chart-plot\").data?.[0]?.x.join() === '6'")


def test_new_metric_key_appears_live_in_its_panel(page, live_asgi, login_as):
    run, token = tracked_run_create(name="fresh")
    login_as("viewer")
    open_run(page, live_asgi, run)
    post_log(live_asgi, run, token, {"metrics": [{"step": 0, "key": "kl", "value": 0.1}, {"step": 0, "key": "my/custom", "value": 3}]})
    page.wait_for_function("document.querySelector('[data-panel=kl] .chart-plot').data.length >= 1")
    page.wait_for_selector("[data-panel='k-my/custom']")


def test_click_opens_that_steps_rollouts(page, live_asgi, login_as):
    run, token = tracked_run_create(name="clicky")
    post_log(live_asgi, run, token, metrics(range(3), f=lambda s: 1.0))
    login_as("viewer")
    open_run(page, live_asgi, run)
    page.evaluate(f"""() => {{ const gd = document.querySelector('{REWARD_PLOT}');
        gd.emit('plotly_click', {{points: [{{curveNumber: gd.data.findIndex(t => t.name === 'reward (mean ± std)'), pointIndex: 2}}]}}); }}""")
    page.wait_for_url(f"**/rollouts/runs/{run.pk}/steps/2/")


def test_permalink_reopens_the_same_view_and_comments_mark_the_chart(page, live_asgi, login_as):
    run, token = tracked_run_create(name="shared")
    post_log(live_asgi, run, token, metrics(range(20)))
    user = login_as("reviewer")
    Comment.objects.create(run=run, step=7, body="<b>look</b> here", author=user)
    open_run(page, live_asgi, run, "?smooth=0.6&logy=1&range=2,12")
    assert page.locator("[data-smooth-value]").inner_text() == "0.60"
    layout = page.evaluate(f"() => document.querySelector('{REWARD_PLOT}').layout")
    assert layout["yaxis"]["type"] == "log"
    assert layout["xaxis"]["range"] == [2, 12]
    assert any(s["x0"] == 7 for s in layout["shapes"])
    assert any("&lt;b&gt;look" in (a.get("hovertext") or "") for a in layout["annotations"])
    assert page.locator("[data-comment-list] .comment-body").inner_text() == "<b>look</b> here"
    # a comment added from the form shows up
    page.fill("#id_step", "15")
    page.fill("#id_body", "kl spike")
    page.click("text=Pin comment")
    page.wait_for_selector("text=Comment pinned to step 15.")
    assert Comment.objects.filter(run=run, step=15, body="kl spike", author=user).exists()


def test_live_point_is_drawn_as_a_tail_at_once_then_folded_into_plotly(page, live_asgi, login_as):
    run, token = tracked_run_create(name="tail")
    post_log(live_asgi, run, token, metrics(range(20)))
    login_as("viewer")
    open_run(page, live_asgi, run)
    # a running run leaves room on the right for the steps to come
    xrange = page.evaluate(f"() => document.querySelector('{REWARD_PLOT}').layout.xaxis.range")
    assert xrange[0] == 0 and xrange[1] >= 19 + 8
    post_log(live_asgi, run, token, metrics([20], f=lambda s: 1.0))
    # drawn over the chart at once, on plotly's own axes: a segment from the last drawn point to the new one
    page.wait_for_function("(() => { const p = document.querySelector('[data-panel=reward] .live-tail path');"
                           " return p && /^M[\\d.]+,[\\d.]+L[\\d.]+,[\\d.]+$/.test(p.getAttribute('d')); })()")
    d = page.evaluate("document.querySelector('[data-panel=reward] .live-tail path').getAttribute('d')")
    (x0, y0), (x1, y1) = [tuple(map(float, part.split(","))) for part in d[1:].split("L")]
    expect = page.evaluate(f"""() => {{ const fl = document.querySelector('{REWARD_PLOT}')._fullLayout;
        return [fl.xaxis._offset + fl.xaxis.l2p(19), fl.yaxis._offset + fl.yaxis.l2p(1.9),
                fl.xaxis._offset + fl.xaxis.l2p(20), fl.yaxis._offset + fl.yaxis.l2p(1.0)]; }}""")
    assert [round(v) for v in (x0, y0, x1, y1)] == [round(v) for v in expect]
    # …and folded into plotly's trace by extendTraces within a couple of seconds; the tail is gone then
    page.wait_for_function(f"document.querySelector('{REWARD_PLOT}').data.some(t => t.x.length === 21)", timeout=10_000)
    page.wait_for_function("!document.querySelector('[data-panel=reward] .live-tail path')")
    assert reward_points(page)["x"] == list(range(21))


def test_live_point_outside_the_axes_redraws_the_panel_to_hold_it(page, live_asgi, login_as):
    run, token = tracked_run_create(name="spike")
    post_log(live_asgi, run, token, metrics(range(10)))
    login_as("viewer")
    open_run(page, live_asgi, run)
    post_log(live_asgi, run, token, metrics([10], f=lambda s: 50.0))  # far above the drawn y range
    page.wait_for_function(f"document.querySelector('{REWARD_PLOT}').data.some(t => t.x.length === 11)")
    yrange = page.evaluate(f"() => document.querySelector('{REWARD_PLOT}').layout.yaxis.range")
    assert yrange[1] > 50.0


def test_constant_series_gets_a_range_around_its_value(page, live_asgi, login_as):
    run, token = tracked_run_create(name="flat-lr")
    post_log(live_asgi, run, token, metrics(range(5), key="learning_rate", f=lambda s: 1e-4))
    login_as("viewer")
    open_run(page, live_asgi, run)
    lo, hi = page.evaluate("() => document.querySelector('[data-panel=lr] .chart-plot').layout.yaxis.range")
    assert 0 < lo < 1e-4 < hi < 2e-4  # not plotly's default of 1e-4 ± 1, which reads as a line at 0


def test_aha_badge_and_marker_appear_live_when_reflection_changes_level(page, live_asgi, login_as):
    from django.core.cache import cache

    cache.clear()
    run, token = tracked_run_create(name="aha-live")
    post_log(live_asgi, run, token, metrics(range(20), key="reflection/rate_per_1k_tokens", f=lambda s: 0.5))
    login_as("viewer")
    open_run(page, live_asgi, run)
    assert page.locator("[data-signals] .badge.aha").count() == 0
    page.evaluate("() => { document.querySelector('[data-r1-charts]').__charts.cfg.signals_ms = 100; }")
    post_log(live_asgi, run, token, metrics(range(20, 40), key="reflection/rate_per_1k_tokens", f=lambda s: 3.0))
    badge = page.locator("[data-signals] .badge.aha")
    badge.wait_for(timeout=15_000)
    assert "aha moment @ step 20" in badge.inner_text()
    shapes = page.evaluate("() => document.querySelector('[data-panel=reflection] .chart-plot').layout.shapes")
    assert any(sh["x0"] == 20 and sh["line"]["dash"] == "dash" for sh in shapes)


def test_zoom_on_the_wall_time_axis_fetches_every_point_of_that_span(page, live_asgi, login_as):
    run, token = tracked_run_create(name="time-zoom")
    post_log(live_asgi, run, token, {"metrics": [{"step": s, "key": "reward", "value": (s % 7) / 7, "ts": 1.7e9 + 10 * s}
                                                 for s in range(3000)]})
    login_as("viewer")
    open_run(page, live_asgi, run, "?x=time")
    assert "of 3,000 points, min/max kept" in page.locator("[data-panel=reward] .chart-info").inner_text()
    # zoom to the wall-time span of steps 1000-1100 as a drag does (plotly's local-time strings)
    page.evaluate(f"""() => {{ const gd = document.querySelector('{REWARD_PLOT}');
        const p = (n) => String(n).padStart(2, '0');
        const d = (s) => {{ const t = new Date((1.7e9 + 10 * s) * 1000);
            return `${{t.getFullYear()}}-${{p(t.getMonth() + 1)}}-${{p(t.getDate())}} ${{p(t.getHours())}}:${{p(t.getMinutes())}}:${{p(t.getSeconds())}}`; }};
        return Plotly.relayout(gd, {{'xaxis.range[0]': d(1000), 'xaxis.range[1]': d(1100)}}); }}""")
    page.wait_for_function(f"""(() => {{ const gd = document.querySelector('{REWARD_PLOT}');
        const t = gd.data.find(t => t.name && t.name.startsWith('reward')); return t && t.x.length < 400; }})()""")
    info = page.locator("[data-panel=reward] .chart-info").inner_text()
    xs = page.evaluate(f"""() => {{ const c = document.querySelector('[data-r1-charts]').__charts;
        const p = c.panels.find(p => p.spec.id === 'reward'); return p.zoom[Object.keys(p.zoom)[0]].x; }}""")
    assert xs == list(range(xs[0], xs[-1] + 1)) and xs[0] <= 1000 and xs[-1] >= 1100, info  # every step, none missing


def test_compare_overlays_runs_with_a_legend_and_gains_points_live(page, live_asgi, login_as):
    a, token_a = tracked_run_create(name="run-a", config={"lr": 1e-6})
    b, token_b = tracked_run_create(name="run-<b>", config={"lr": 3e-6})
    post_log(live_asgi, a, token_a, metrics(range(10)))
    post_log(live_asgi, b, token_b, metrics(range(12), f=lambda s: s / 5))
    login_as("viewer")
    page.goto(f"{live_asgi}/metrics/compare/?runs={a.pk},{b.pk}&metrics=reward")
    page.wait_for_selector("[data-r1-charts][data-ready='1']")
    plot = "[data-panel='m-reward'] .chart-plot"
    gd = page.evaluate(f"() => {{ const gd = document.querySelector(\"{plot}\"); return {{names: gd.data.filter(t => t.showlegend !== false).map(t => t.name), legend: gd._fullLayout.showlegend}}; }}")
    assert gd["names"] == ["run-a", "run-&lt;b&gt;"] and gd["legend"]  # one colour per run, named, escaped
    page.wait_for_function("[...document.querySelectorAll('[data-live]')].every(e => e.textContent.includes('live'))")
    post_log(live_asgi, a, token_a, metrics([10], f=lambda s: 0.5))
    page.wait_for_function(f"document.querySelector(\"{plot}\").data.some(t => t.name === 'run-a' && t.x.length === 11)")


def test_a_run_with_hundreds_of_keys_lists_them_by_prefix_draws_panels_in_view_and_filters(page, live_asgi, login_as):
    # Issue 15, finding 9: the page shipped and drew every key's panel (70k keys froze it). Now the
    # first screen's panels come with the page, every other key is listed by prefix, and a group's
    # panel is fetched and drawn when it scrolls into view; the filter box narrows the panels.
    run, token = tracked_run_create(name="many-keys")
    keys = (["reward", "kl"] + [f"train/layer_{i:03d}/grad_norm" for i in range(150)]
            + [f"system/gpu_{i}/util" for i in range(8)] + [f"loss_{i:02d}" for i in range(40)])
    post_log(live_asgi, run, token, {"metrics": [{"step": s, "key": k, "value": s + i} for s in range(3) for i, k in enumerate(keys)]})
    login_as("viewer")
    open_run(page, live_asgi, run)
    charts = "document.querySelector('[data-r1-charts]').__charts"
    assert page.evaluate(f"Object.keys({charts}.cfg.series).sort()") == ["kl", "reward"]
    groups = page.locator("[data-group]")
    assert groups.evaluate_all("els => els.map(e => [e.dataset.group, e.open, e.querySelector('[data-group-count]').textContent])") == [
        ["system/", False, "8 keys"], ["train/", False, "150 keys"], ["other", False, "40 keys"]]
    assert page.locator(".chart-card.extra").count() == 0  # a closed group makes no panels

    page.click("[data-group='train/'] > summary")
    first, far = "[data-panel='k-train/layer_000/grad_norm']", "[data-panel='k-train/layer_140/grad_norm']"
    page.wait_for_function(f"document.querySelector(\"{first} .chart-plot\")?.data?.[0]?.x.length === 3")
    assert page.locator(".chart-card.extra").count() == 150
    assert page.evaluate(f"document.querySelector(\"{far} .chart-plot\").data") is None  # not drawn, not fetched
    fetched = page.evaluate(f"{charts}.loadStats")
    assert 0 < fetched["keys"] < 30 and fetched["requests"] <= 3
    page.locator(far).scroll_into_view_if_needed()
    page.wait_for_function(f"document.querySelector(\"{far} .chart-plot\")?.data?.[0]?.y.join() === '142,143,144'")
    assert page.locator(f"{far} .chart-info").inner_text() == "3 points"
    # a live step: the panel in view draws it; a loaded panel off screen keeps it in its line without
    # a plotly redraw (until it is scrolled back to); a key whose panel was never loaded is not kept
    post_log(live_asgi, run, token, {"metrics": [{"step": 3, "key": k, "value": 3 + i} for i, k in enumerate(keys)]})
    page.wait_for_function(f"document.querySelector(\"{far} .chart-plot\").data[0].x.length === 4")
    line = f"{charts}.lines['{run.pk}|' + %r]"
    assert page.evaluate(f"{line % 'train/layer_000/grad_norm'}.x.length") == 4
    assert page.evaluate(f"document.querySelector(\"{first} .chart-plot\").data[0].x.length") == 3
    assert page.evaluate(f"{line % 'train/layer_100/grad_norm'} === undefined")

    page.fill("[data-filter]", "gpu_1")
    assert page.locator(".chart-card:visible").evaluate_all("els => els.map(e => e.dataset.panel)") == ["k-system/gpu_1/util"]
    assert page.locator("[data-filter-count]").inner_text() == "1 of 200 keys"
    assert "filter=gpu_1" in page.url
    page.fill("[data-filter]", "train/layer_00?/*")  # a glob
    assert page.locator(".chart-card:visible").count() == 10
    assert page.locator("[data-group]:visible").evaluate_all("els => els.map(e => e.dataset.group)") == ["train/"]
    page.fill("[data-filter]", "KL")  # case-insensitive, the first screen's panels too
    assert page.locator(".chart-card:visible").evaluate_all("els => els.map(e => e.dataset.panel)") == ["kl"]
    open_run(page, live_asgi, run, "?filter=loss_3")  # the filter is kept in the URL: a view to share
    assert page.locator("[data-filter]").input_value() == "loss_3"
    page.wait_for_function("document.querySelector(\"[data-panel='k-loss_30'] .chart-plot\")?.data?.[0]?.x.length === 4")
    assert page.locator(".chart-card:visible").count() == 10


def post_rewind(base, run, token, step):
    req = urllib.request.Request(f"{base}/api/v1/runs/{run.pk}/rewind", data=json.dumps({"step": step}).encode(),
                                 method="POST", headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_a_rewound_run_redraws_live_with_the_lost_attempt_faint(page, live_asgi, login_as):
    """A resumed attempt rewinds the run: an open page drops what came after the resume step,
    draws the new attempt's values, and the dead attempt's as a faint "attempt 1, lost" line."""
    run, token = tracked_run_create(name="resumed")
    post_log(live_asgi, run, token, metrics(range(1, 21)))
    login_as("viewer")
    open_run(page, live_asgi, run)
    assert post_rewind(live_asgi, run, token, 10)["lost"]["metrics"] == 10
    post_log(live_asgi, run, token, metrics(range(11, 21), f=lambda s: -s))
    page.wait_for_function(f"""() => {{
        const gd = document.querySelector('{REWARD_PLOT}');
        const lost = gd.data.find(t => t.name === 'attempt 1, lost');
        const cur = gd.data.find(t => t.name && t.name.startsWith('reward'));
        return lost && lost.x.length === 10 && cur.x.length === 20 && cur.y[19] === -20;
    }}""", timeout=15000)
    traces = page.evaluate(f"""() => document.querySelector('{REWARD_PLOT}').data
        .filter(t => t.name === 'attempt 1, lost' || (t.name && t.name.startsWith('reward') && !t.name.includes('smoothed')))
        .map(t => ({{name: t.name, x: Array.from(t.x), y: Array.from(t.y), opacity: t.opacity}}))""")
    lost = next(t for t in traces if t["name"] == "attempt 1, lost")
    cur = next(t for t in traces if t["name"] != "attempt 1, lost")
    assert lost["x"] == list(range(11, 21)) and lost["y"] == [s / 10 for s in range(11, 21)] and lost["opacity"] < 1
    assert cur["x"] == list(range(1, 21)) and cur["y"] == [s / 10 for s in range(1, 11)] + [-s for s in range(11, 21)]
    page.reload()  # the first paint draws the same
    page.wait_for_selector("[data-r1-charts][data-ready='1']")
    assert page.evaluate(f"document.querySelector('{REWARD_PLOT}').data.some(t => t.name === 'attempt 1, lost')")


HOOKS = """window.__seen = {drawn: []};
window.r1labHooks = {
  firstScreen(t, panels) { window.__seen.firstScreen = [t, panels]; },
  ready(t) { window.__seen.ready = t; },
  drawn(rec) { window.__seen.drawn.push(rec); },
};"""


def test_the_page_writes_no_benchmark_globals_unless_hooks_are_opted_in(page, new_page, live_asgi, login_as):
    # Issue 16: the run page wrote window.__r1lab_drawn, __r1lab_ready, __r1lab_first_screen, … on
    # every page for the benchmarks. Now it writes none; a benchmark or test that sets
    # window.r1labHooks before the page's modules run gets the same measures through it.
    run, token = tracked_run_create(name="hooks")
    post_log(live_asgi, run, token, metrics(range(10)))
    login_as("viewer")
    hooked = new_page()
    hooked.add_init_script(HOOKS)
    login_as("viewer", hooked)
    open_run(page, live_asgi, run)
    open_run(hooked, live_asgi, run)
    post_log(live_asgi, run, token, metrics([10], f=lambda s: 0.5))  # inside the drawn axes: a tail
    hooked.wait_for_function("window.__seen.drawn.some(r => r.step === 10)")
    # the plain page drew it too (as a tail, then folded into plotly's trace)
    page.wait_for_function(f"document.querySelector('{REWARD_PLOT}').data.some(t => t.x.length === 11)", timeout=10_000)
    assert page.evaluate("Object.keys(window).filter(k => k.startsWith('__r1lab'))") == []
    rec = hooked.evaluate("window.__seen.drawn.find(r => r.step === 10)")
    assert rec["line"] == f"{run.pk}|reward" and rec["value"] == 0.5 and rec["via"] == "tail" and rec["at"] >= rec["recv"]
    first_t, first_panels = hooked.evaluate("window.__seen.firstScreen")
    assert first_panels > 0 and 0 < first_t <= hooked.evaluate("window.__seen.ready")
