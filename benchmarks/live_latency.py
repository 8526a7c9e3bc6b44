"""Live latency: `POST …/log` sent → the point drawn by Plotly.extendTraces in a browser, with 50
run pages open on the run (BENCH_BROWSERS Chromium pages + the rest as raw WebSocket clients).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> REDIS_URL=redis://127.0.0.1:6379/<n> \
        .venv/bin/python benchmarks/live_latency.py

A trainer-like poster sends one step (18 metrics) every 250 ms for BENCH_POSTS steps; the browser
pages record, for each `reward` point (the page's `drawn` hook, opted in with
_tracking_browser.HOOKS_INIT): when it was drawn on screen — as the
live tail over the chart (an SVG path on plotly's axes), or by Plotly.extendTraces when it fell
outside the drawn axes — and when it reached plotly's graph data (the extendTraces that folds the
tail in, at most once a second per panel when the page is idle). The socket clients record when
the message arrived. Same machine, same clock. Goal (issue 6): p95 ≤ 250 ms with 50 open pages,
judged on POST → the next animation frame after the point was drawn (the point on screen).
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import threading
import time

from _tracking_common import RESULTS, Server, machine, median, pct, setup_django

setup_django()

import orjson  # noqa: E402
import websockets  # noqa: E402
from _tracking_browser import ARGS, CHROMIUM, HOOKS_INIT, fill_run, session_cookie  # noqa: E402
from _tracking_synth import step_metrics  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from r1lab.tracking.models import Run  # noqa: E402
from r1lab.tracking.services import tracked_run_create, tracked_run_delete  # noqa: E402

PAGES = int(os.environ.get("BENCH_PAGES", 50))
BROWSERS = int(os.environ.get("BENCH_BROWSERS", 5))
POSTS = int(os.environ.get("BENCH_POSTS", 80))
PRELOAD = 500


def main() -> None:
    run, token = tracked_run_create(name="bench-live", project="bench")
    fill_run(run, PRELOAD)
    user, session = session_cookie()
    server = Server()
    sent: dict[int, float] = {}
    ws_recv: list[float] = []
    dropped: list[int] = []
    stop = threading.Event()
    connected = threading.Event()
    n_ws = PAGES - BROWSERS

    async def ws_clients():
        url = f"ws://127.0.0.1:{server.port}/ws/metrics/runs/{run.pk}/"
        headers = {"Cookie": f"sessionid={session}", "Origin": server.base}
        socks = [await websockets.connect(url, additional_headers=headers, max_size=None) for _ in range(n_ws)]
        for s in socks:
            await s.recv()  # hello
        connected.set()

        async def reader(s):
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(s.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    dropped.append(1)
                    return
                at = time.time()
                data = json.loads(msg)
                for step, _v, _t in data.get("points", {}).get("reward", []):
                    if step in sent:
                        ws_recv.append((at - sent[step]) * 1000)

        await asyncio.gather(*(reader(s) for s in socks))
        for s in socks:
            await s.close()

    ws_thread = threading.Thread(target=lambda: asyncio.run(ws_clients()), daemon=True)
    drawn: list[float] = []
    painted: list[float] = []
    in_data: list[float] = []
    via: dict[str, int] = {}
    parts: dict[str, list[float]] = {"POST → message in page": [], "message → flush (frame/task)": [], "flush → drawn (tail or extendTraces)": [], "drawn → next frame painted": []}
    hidden_pages = not_in_data = 0
    try:
        ws_thread.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            pages = []
            for _ in range(BROWSERS):
                # A context (a window) per page: each is a viewer's foreground tab. Pages opened as
                # tabs of one window get frames only for the active tab (the others' next frame
                # came up to ~1 s late in headless Chromium): a harness artifact, not a viewer's.
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                ctx.add_cookies([{"name": "sessionid", "value": session, "url": server.base}])
                ctx.add_init_script(HOOKS_INIT)
                p = ctx.new_page()
                p.goto(f"{server.base}/metrics/runs/{run.pk}/")
                p.wait_for_selector("[data-r1-charts][data-ready='1']", timeout=60_000)
                p.wait_for_selector("[data-live]:has-text('live')", timeout=60_000)
                pages.append(p)
            assert connected.wait(60)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            rng = random.Random(9)
            for i in range(POSTS):
                step = PRELOAD + i
                body = orjson.dumps({"metrics": [{"step": step, "key": k, "value": v} for k, v in step_metrics(step, PRELOAD + POSTS, rng).items()]})
                sent[step] = time.time()
                conn.request("POST", f"/api/v1/runs/{run.pk}/log", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
                # let the browsers' event loops run (Playwright's sync API pumps on calls)
                deadline = time.monotonic() + 0.25
                while time.monotonic() < deadline:
                    pages[i % len(pages)].wait_for_timeout(25)
            for p in pages:  # the last tails are folded into plotly within a second or two
                p.wait_for_timeout(2500)
            for p in pages:
                hidden_pages += p.evaluate("document.hidden")
                entries = p.evaluate("window.__bench.drawn.filter(e => e.line.endsWith('|reward'))")
                for e in entries:
                    if e["step"] not in sent:
                        continue
                    t0 = sent[e["step"]] * 1000
                    drawn.append(e["at"] - t0)
                    via[e["via"]] = via.get(e["via"], 0) + 1
                    if e.get("inDataAt"):
                        in_data.append(e["inDataAt"] - t0)
                    not_in_data += not e.get("inData")
                    parts["POST → message in page"].append(e["recv"] - t0)
                    parts["message → flush (frame/task)"].append(e["frame"] - e["recv"])
                    parts["flush → drawn (tail or extendTraces)"].append(e["at"] - e["frame"])
                    if e.get("painted"):
                        painted.append(e["painted"] - t0)
                        parts["drawn → next frame painted"].append(e["painted"] - e["at"])
            browser.close()
    finally:
        stop.set()
        ws_thread.join(10)
        server.stop()
        tracked_run_delete(run=Run.objects.get(pk=run.pk))
    expected_drawn = POSTS * BROWSERS
    # The goal is judged on the frame that shows the point, the stricter of the two measures.
    ok = bool(painted) and pct(painted, 95) <= 250 and len(drawn) == expected_drawn
    print(f"\n{PAGES} open run pages ({BROWSERS} Chromium + {n_ws} WebSocket clients), {POSTS} posts of 18 metrics, one every 250 ms\n")
    print("| measure | n | median ms | p95 ms | max ms |\n|---|---|---|---|---|")
    print(f"| POST sent → drawn in Chromium (live tail or extendTraces) | {len(drawn)}/{expected_drawn} | {median(drawn):.0f} | {pct(drawn, 95):.0f} | {max(drawn):.0f} |")
    if painted:
        print(f"| POST sent → next frame painted | {len(painted)}/{expected_drawn} | {median(painted):.0f} | {pct(painted, 95):.0f} | {max(painted):.0f} |")
    for name, v in parts.items():
        if v:
            print(f"| &nbsp; part: {name} | {len(v)} | {median(v):.0f} | {pct(v, 95):.0f} | {max(v):.0f} |")
    if in_data:
        print(f"| POST sent → in plotly's graph data (extendTraces resolved) | {len(in_data)}/{expected_drawn} | {median(in_data):.0f} | {pct(in_data, 95):.0f} | {max(in_data):.0f} |")
    if ws_recv:
        print(f"| POST sent → received by socket client | {len(ws_recv)}/{POSTS * n_ws} | {median(ws_recv):.0f} | {pct(ws_recv, 95):.0f} | {max(ws_recv):.0f} |")
    print(f"drawn via: {via}")
    print(f"socket clients dropped by the server: {len(dropped)}; Chromium pages hidden: {hidden_pages}/{BROWSERS}; points drawn but not in graph data: {not_in_data}")
    print(f"Chromium flags: {' '.join(ARGS)}")
    print(f"\ngoal p95 ≤ 250 ms (POST → next frame painted): {'met' if ok else 'NOT met'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "live_latency.json").write_text(json.dumps({
        "benchmark": "live_latency", "command": "DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python benchmarks/live_latency.py",
        "pages": PAGES, "browsers": BROWSERS, "socket_clients": n_ws, "posts": POSTS,
        "drawn_ms": {"n": len(drawn), "expected": expected_drawn, "median": median(drawn), "p95": pct(drawn, 95), "max": max(drawn),
                     "means": "POST sent → the point drawn on screen: appended to the live tail (an SVG path over the chart, on plotly's own axis transforms) or, when outside the drawn axes, Plotly.extendTraces resolved (timestamped in the page, performance.timeOrigin + now(), same clock)",
                     "via": via},
        "in_plotly_data_ms": {"n": len(in_data), "median": median(in_data) if in_data else None, "p95": pct(in_data, 95) if in_data else None,
                              "max": max(in_data) if in_data else None,
                              "means": "POST sent → Plotly.extendTraces resolved with the point in the graph's data (hover, click, CSV of the panel see it from then on)"},
        "painted_ms": {"n": len(painted), "median": median(painted) if painted else None, "p95": pct(painted, 95) if painted else None,
                       "max": max(painted) if painted else None, "means": "POST sent → the next animation frame after the point was drawn (on screen)"},
        "parts_ms": {k: {"n": len(v), "median": median(v), "p95": pct(v, 95), "max": max(v)} for k, v in parts.items() if v},
        "chromium_pages_hidden": hidden_pages, "points_not_in_graph_data": not_in_data,
        "chromium_args": ARGS,
        "chromium_args_note": "--disable-renderer-backgrounding --disable-background-timer-throttling --disable-backgrounding-occluded-windows: "
                              "every benchmark page runs like a user's visible tab (60 Hz frames, unthrottled timers); "
                              "the page itself flushes with a task instead of a frame when the tab is hidden",
        "socket_ms": {"n": len(ws_recv), "expected": POSTS * n_ws, "median": median(ws_recv) if ws_recv else None,
                      "p95": pct(ws_recv, 95) if ws_recv else None, "max": max(ws_recv) if ws_recv else None},
        "socket_clients_dropped": len(dropped), "load_average_at_end": os.getloadavg(),
        "channel_layer": "redis" if os.environ.get("REDIS_URL") else "in-memory",
        "goal": {"p95_ms": 250, "measure": "painted_ms"}, "goal_met": ok, "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
