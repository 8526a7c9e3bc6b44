"""A run page for a run that logs 3,000 keys (issue 15, finding 9), in headless Chromium:
navigation start → the first screen's panels drawn (the page's `firstScreen` hook, opted in with
_tracking_browser.HOOKS_INIT: the GRPO panels in the 1400×1000 viewport), and what the page ships.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> .venv/bin/python benchmarks/run_page_keys.py

The run holds the 18 keys the GRPO panels draw and 2,982 others (per layer, per GPU, per reward
function, per eval task, …) over BENCH_STEPS steps (default 300: 900,000 points), written through
the store (`store.series_ids` + `store.insert_points`, one transaction per 50 steps, as a batch of
the ingest API would be). 2 warm-up loads, then BENCH_REPS loads. Then, on one loaded page: a
group's panel (opening `train/`, then scrolling to a panel far down: time until it is fetched and
drawn), the filter box (time of one filter pass over the 3,000 keys, several queries), and
live steps of every key posted to the ingest API while the first screen is in view (the page's
time per WebSocket message: the points of the panels on screen drawn as live tails, the others
dropped, or kept in their lines for the loaded panels off screen).
Goal: first screen < 1 s (median).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.request

from _tracking_common import RESULTS, Server, machine, median, pct, setup_django

setup_django()

from _tracking_browser import ARGS, CHROMIUM, HOOKS_INIT, READY, session_cookie  # noqa: E402
from _tracking_synth import KEYS as GRPO_KEYS, step_metrics  # noqa: E402
from django.db import transaction  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from r1lab.tracking import store  # noqa: E402
from r1lab.tracking.models import Run  # noqa: E402
from r1lab.tracking.services import tracked_run_create, tracked_run_delete  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", 300))
REPS = int(os.environ.get("BENCH_REPS", 10))
N_KEYS = 3000
FILTERS = ["grad_norm", "gpu_1", "train/layer_0*/update_ratio", "rewards/", "zzz-no-match", ""]


def wide_keys() -> list[str]:
    """The GRPO keys, then families a large RL run logs, filled up to N_KEYS with unprefixed keys."""
    extra = [f"train/layer_{i:03d}/{m}" for i in range(600) for m in ("grad_norm", "weight_norm", "update_ratio")]
    extra += [f"system/gpu_{g:03d}/{m}" for g in range(128) for m in ("util", "mem_gb", "temp_c", "power_w")]
    extra += [f"rewards/fn_{i:02d}/{m}" for i in range(24) for m in ("mean", "std")]
    extra += [f"eval/task_{i:03d}/pass@1" for i in range(100)]
    extra += [f"completions/len_bucket_{i:03d}" for i in range(120)]
    extra += [f"timing/phase_{i:02d}_s" for i in range(60)]
    keys = list(GRPO_KEYS) + extra
    keys += [f"aux_loss_{i:03d}" for i in range(N_KEYS - len(keys))]
    assert len(set(keys)) == N_KEYS
    return keys


def step_row(step: int, n_steps: int, rng: random.Random, phase: dict[str, float]) -> dict[str, float]:
    """One step of every key: GRPO-like curves for the GRPO keys, a noisy sine for the others."""
    row = step_metrics(step, n_steps, rng)
    for k, ph in phase.items():
        row[k] = math.sin(step / 20 + ph) + rng.gauss(0, 0.05)
    return row


def fill(run, keys: list[str], steps: int, n_steps: int, phase: dict[str, float]) -> None:
    rng = random.Random(0)
    for start in range(0, steps, 50):
        sids_, steps_, values_, tss_ = [], [], [], []
        with transaction.atomic():
            sids = store.series_ids(run_id=run.pk, keys=keys)
            for step in range(start, min(steps, start + 50)):
                for k, v in step_row(step, n_steps, rng, phase).items():
                    sids_.append(sids[k]); steps_.append(step); values_.append(v); tss_.append(1.7e9 + step)  # noqa: E702
            store.insert_points(sids=sids_, steps=steps_, values=values_, tss=tss_)


LIVE_POSTS = 10
HOOK_JS = """() => {
  // the page's own time per metrics message (parse excluded): onMessage, as the socket calls it
  const c = document.querySelector('[data-r1-charts]').__charts, orig = c.onMessage.bind(c);
  window.__msg_ms = [];
  c.onMessage = (runId, msg) => { const t = performance.now(); orig(runId, msg);
    if (msg.type === 'metrics.points') window.__msg_ms.push(performance.now() - t); };
}"""

LAZY_JS = """async (sel) => {
  // scroll the panel into view; resolve when plotly holds its data (checked every frame)
  const t0 = performance.now(), frame = () => new Promise(r => requestAnimationFrame(r));
  while (!document.querySelector(sel)) await frame(); // (a group's cards are made when it opens)
  document.querySelector(sel).scrollIntoView({block: "center"});
  while (!(document.querySelector(sel + ' .chart-plot').data || []).length) await frame();
  return performance.now() - t0;
}"""


def main() -> None:
    keys = wide_keys()
    phase = {k: random.Random(k).random() * 6.28 for k in keys[len(GRPO_KEYS):]}
    run, token = tracked_run_create(name="bench-page-keys", project="bench")
    fill(run, keys, STEPS, STEPS + LIVE_POSTS, phase)
    user, session = session_cookie()
    server = Server()
    first_ms, ready_ms, ttfb_ms, resp_end, html_kb = [], [], [], [], []
    filter_ms: dict[str, float] = {}
    lazy = {}
    live_ms: list[float] = []
    live_error = None
    shipped = first_n = 0
    load_before = os.getloadavg()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.add_cookies([{"name": "sessionid", "value": session, "url": server.base}])
            ctx.add_init_script(HOOKS_INIT)
            page = ctx.new_page()
            for i in range(2 + REPS):
                page.goto(f"{server.base}/metrics/runs/{run.pk}/", wait_until="commit")
                page.wait_for_function(READY, timeout=120_000)
                nav = page.evaluate("(() => { const n = performance.getEntriesByType('navigation')[0];"
                                    " return [n.responseStart, n.responseEnd, n.decodedBodySize]; })()")
                if i >= 2:
                    first_ms.append(page.evaluate("window.__bench.firstScreen"))
                    ready_ms.append(page.evaluate("window.__bench.ready"))
                    ttfb_ms.append(nav[0])
                    resp_end.append(nav[1])
                    html_kb.append(nav[2] / 1024)
            first_n = page.evaluate("window.__bench.firstScreenPanels")
            shipped = page.evaluate("Object.keys(document.querySelector('[data-r1-charts]').__charts.cfg.series).length")
            if page.locator("[data-filter]").count():
                page.click("[data-group='train/'] > summary")
                lazy["open train/ → first panel drawn"] = page.evaluate(LAZY_JS, "[data-panel='k-train/layer_000/grad_norm']")
                lazy["scroll to panel 1,500 of train/ → drawn"] = page.evaluate(LAZY_JS, "[data-panel='k-train/layer_500/grad_norm']")
                lazy["loads"] = page.evaluate("document.querySelector('[data-r1-charts]').__charts.loadStats")
                for q in FILTERS:
                    times = []
                    for _ in range(5):
                        page.fill("[data-filter]", q + " ")  # a different value each time: every fill filters
                        page.fill("[data-filter]", q)
                        times.append(page.evaluate("window.__bench.filterMs"))
                    filter_ms[q or "(cleared)"] = median(times)
                page.wait_for_selector("[data-live]:has-text('live')")
                page.evaluate("window.scrollTo(0, 0)")  # watching the first screen while every key streams in
                page.wait_for_timeout(300)
                page.evaluate(HOOK_JS)
                rng = random.Random(1)
                for i in range(LIVE_POSTS):
                    step = STEPS + i
                    row = step_row(step, STEPS + LIVE_POSTS, rng, phase)
                    body = json.dumps({"metrics": [{"step": step, "key": k, "value": v} for k, v in row.items()]}).encode()
                    req = urllib.request.Request(f"{server.base}/api/v1/runs/{run.pk}/log", data=body, method="POST",
                                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                    try:
                        urllib.request.urlopen(req, timeout=30).read()
                    except urllib.error.HTTPError as exc:  # e.g. a cap on keys per run below 3,000
                        live_error = f"POST /log answered {exc.code}: {exc.read()[:200]!r}"
                        break
                    deadline = time.monotonic() + 5
                    while page.evaluate("window.__msg_ms.length") <= i and time.monotonic() < deadline:
                        page.wait_for_timeout(20)
                live_ms = page.evaluate("window.__msg_ms")
            browser.close()
    finally:
        server.stop()
        tracked_run_delete(run=Run.objects.get(pk=run.pk))
    load_after = os.getloadavg()
    ok = median(first_ms) < 1000
    print(f"\nrun page, {N_KEYS:,} keys × {STEPS:,} steps ({N_KEYS * STEPS:,} points), {shipped} series shipped with the page,"
          f" {first_n} panels on the first screen (1400×1000)\n")
    print("| measure | median | p95 | n |\n|---|---|---|---|")
    print(f"| navigation start → first byte (server), ms | {median(ttfb_ms):.0f} | {pct(ttfb_ms, 95):.0f} | {len(ttfb_ms)} |")
    print(f"| navigation start → HTML received, ms | {median(resp_end):.0f} | {pct(resp_end, 95):.0f} | {len(resp_end)} |")
    print(f"| navigation start → first screen drawn ({first_n} GRPO panels), ms | {median(first_ms):.0f} | {pct(first_ms, 95):.0f} | {len(first_ms)} |")
    print(f"| navigation start → all 12 GRPO panels drawn (data-ready), ms | {median(ready_ms):.0f} | {pct(ready_ms, 95):.0f} | {len(ready_ms)} |")
    print(f"| HTML size, kB | {median(html_kb):.0f} | {pct(html_kb, 95):.0f} | {len(html_kb)} |")
    for q, ms in filter_ms.items():
        print(f"| filter {q!r} over {N_KEYS:,} keys (one pass), ms | {ms:.1f} | | 5 |")
    for name, v in lazy.items():
        if name != "loads":
            print(f"| {name}, ms | {v:.0f} | | 1 |")
    if live_ms:
        print(f"| live step of every key (~{N_KEYS:,}), the first screen in view: the page's time per WebSocket message, ms | {median(live_ms):.1f} | {pct(live_ms, 95):.1f} | {len(live_ms)} |")
    if live_error:
        print(f"live steps not measured: {live_error}")
    if lazy:
        print(f"\nlazy panels fetched: {lazy['loads']['keys']} keys in {lazy['loads']['requests']} data.json requests")
    print(f"load average (1, 5, 15 min) before: {tuple(round(x, 2) for x in load_before)}, after: {tuple(round(x, 2) for x in load_after)}")
    print(f"\ngoal < 1 s to the first screen: {'met' if ok else 'NOT met'} (median)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_page_keys.json").write_text(json.dumps({
        "benchmark": "run_page_keys", "command": "DATABASE_URL=postgres://… .venv/bin/python benchmarks/run_page_keys.py",
        "keys": N_KEYS, "steps": STEPS, "points": N_KEYS * STEPS, "series_shipped": shipped, "first_screen_panels": first_n,
        "viewport": [1400, 1000], "first_screen_ms": first_ms, "median_first_screen_ms": median(first_ms),
        "p95_first_screen_ms": pct(first_ms, 95), "ready_ms": ready_ms, "median_ready_ms": median(ready_ms),
        "ttfb_ms": ttfb_ms, "median_ttfb_ms": median(ttfb_ms), "response_end_ms": resp_end, "median_response_end_ms": median(resp_end),
        "html_kb": html_kb, "filter_one_pass_ms": filter_ms, "lazy_ms": lazy,
        "live_message_ms": live_ms, "live_error": live_error,
        "load_average_before": load_before, "load_average_after": load_after,
        "goal_ms": 1000, "goal_met": ok, "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
