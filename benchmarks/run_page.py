"""A run page with 12 panels rendering in headless Chromium: navigation start → every panel drawn
(the page's `ready` hook, when the last Plotly.react resolves) and navigation start → the panels on
the first screen drawn (its `firstScreen` hook: the page draws those first, then the ones below the
fold one per task). The hooks are opted in with _tracking_browser.HOOKS_INIT.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> .venv/bin/python benchmarks/run_page.py

The run holds every metric the page draws (18 keys) over BENCH_STEPS steps (default 20,000:
360,000 points, each panel downsampled to ≤ 2,000 points per trace). 2 warm-up loads, then
BENCH_REPS loads. Goal (issue 6): < 1 s.
"""
from __future__ import annotations

import json
import os

from _tracking_common import RESULTS, Server, machine, median, pct, setup_django

setup_django()

from _tracking_browser import ARGS, CHROMIUM, HOOKS_INIT, READY, fill_run, session_cookie  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from r1lab.tracking.models import Run  # noqa: E402
from r1lab.tracking.services import tracked_run_create, tracked_run_delete  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", 20_000))
REPS = int(os.environ.get("BENCH_REPS", 10))


def main() -> None:
    run, _ = tracked_run_create(name="bench-page", project="bench")
    fill_run(run, STEPS)
    user, session = session_cookie()
    server = Server()
    times, server_ms, first_ms, panels, first_n = [], [], [], 0, 0
    resp_end, start_ms = [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.add_cookies([{"name": "sessionid", "value": session, "url": server.base}])
            ctx.add_init_script(HOOKS_INIT)
            page = ctx.new_page()
            for i in range(2 + REPS):
                page.goto(f"{server.base}/metrics/runs/{run.pk}/", wait_until="commit")
                page.wait_for_function(READY, timeout=30_000)
                ready = page.evaluate("window.__bench.ready")
                first = page.evaluate("window.__bench.firstScreen")
                first_n = page.evaluate("window.__bench.firstScreenPanels")
                rend = page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd")
                start = page.evaluate("window.__bench.start")
                ttfb = page.evaluate("performance.getEntriesByType('navigation')[0].responseStart")
                panels = page.evaluate("document.querySelectorAll('.chart-card:not(.empty) .main-svg').length")
                if i >= 2:
                    times.append(ready)
                    first_ms.append(first)
                    resp_end.append(rend)
                    start_ms.append(start)
                    server_ms.append(ttfb)
            browser.close()
    finally:
        server.stop()

        tracked_run_delete(run=Run.objects.get(pk=run.pk))
    ok = median(times) < 1000
    print(f"\nrun page, {STEPS:,} steps × 18 keys, {panels} plotly svgs drawn\n")
    print("| measure | median ms | p95 ms | n |\n|---|---|---|---|")
    print(f"| navigation start → first byte (server) | {median(server_ms):.0f} | {pct(server_ms, 95):.0f} | {len(server_ms)} |")
    print(f"| navigation start → HTML received (last byte) | {median(resp_end):.0f} | {pct(resp_end, 95):.0f} | {len(resp_end)} |")
    print(f"| navigation start → charts start (HTML parsed, plotly.js loaded and run) | {median(start_ms):.0f} | {pct(start_ms, 95):.0f} | {len(start_ms)} |")
    print(f"| navigation start → first screen drawn ({first_n} panels, 1400×1000) | {median(first_ms):.0f} | {pct(first_ms, 95):.0f} | {len(first_ms)} |")
    print(f"| navigation start → all panels drawn | {median(times):.0f} | {pct(times, 95):.0f} | {len(times)} |")
    print(f"\ngoal < 1 s: {'met' if ok else 'NOT met'} (median)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_page.json").write_text(json.dumps({
        "benchmark": "run_page", "command": "DATABASE_URL=postgres://… .venv/bin/python benchmarks/run_page.py",
        "steps": STEPS, "keys": 18, "panels": 12, "ready_ms": times, "ttfb_ms": server_ms, "first_screen_ms": first_ms, "first_screen_panels": first_n,
        "median_first_screen_ms": median(first_ms), "p95_first_screen_ms": pct(first_ms, 95),
        "median_ttfb_ms": median(server_ms), "p95_ttfb_ms": pct(server_ms, 95), "viewport": [1400, 1000],
        "response_end_ms": resp_end, "charts_start_ms": start_ms, "median_response_end_ms": median(resp_end), "median_charts_start_ms": median(start_ms),
        "median_ready_ms": median(times), "p95_ready_ms": pct(times, 95), "goal_ms": 1000, "goal_met": ok,
        "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
