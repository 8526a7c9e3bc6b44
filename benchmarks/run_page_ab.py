"""The run page of this checkout against another one (OLD_TREE, e.g. an export of the commit before
a front-end change), in one session: two daphne servers on the same database and run, page loads
alternated old/new/new/old… in one headless Chromium, so that both see the same load.

    git archive <commit> | tar -x -C /tmp/old && mkdir -p /tmp/old/var
    OLD_TREE=/tmp/old DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> \
        .venv/bin/python benchmarks/run_page_ab.py

Two runs: the run_page.py run (18 keys × BENCH_STEPS, default 20,000 steps) and the
run_page_keys.py one (3,000 keys × 300 steps). Per load: navigation start → charts start, → the
first screen drawn, → every first-screen panel drawn, read from the page's benchmark hooks
(HOOKS_INIT) or, on a page from before them, from its window.__r1lab_* globals; and the renderer
main thread's CPU time for the load (Chrome's ThreadTime metric, counted per document: from its
start to every panel drawn), which other jobs on a shared machine do not inflate as they do wall time.
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from _tracking_common import RESULTS, Server, machine, median, pct, setup_django

OLD_TREE = os.environ.get("OLD_TREE", "")
if not OLD_TREE:
    print("needs OLD_TREE=<another checkout> to compare with; skipping")
    sys.exit(0)

setup_django()

from _tracking_browser import ARGS, CHROMIUM, HOOKS_INIT, fill_run, session_cookie  # noqa: E402
from _tracking_synth import KEYS as GRPO_KEYS  # noqa: E402
from django.conf import settings  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from r1lab.tracking.models import Run  # noqa: E402
from r1lab.tracking.services import tracked_run_create, tracked_run_delete  # noqa: E402

import run_page_keys  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", 20_000))
REPS = int(os.environ.get("BENCH_REPS", 15))
# hook value, else the global a page from before the hooks wrote
MEASURES = {"start": ("start", "__r1lab_start"), "first_screen": ("firstScreen", "__r1lab_first_screen"),
            "ready": ("ready", "__r1lab_ready")}
READY = "(window.__bench && window.__bench.ready !== undefined) || window.__r1lab_ready !== undefined"


def read(page) -> dict:
    expr = "({" + ", ".join(f"{k}: window.__bench.{h} !== undefined ? window.__bench.{h} : window.{g}"
                            for k, (h, g) in MEASURES.items()) + "})"
    return page.evaluate(expr)


def compare(run, session: str) -> dict:
    # the same secret key for both: the session cookie made here must be valid there
    env = {"SECRET_KEY": settings.SECRET_KEY}
    servers = {"old": Server(env=env, root=Path(OLD_TREE)), "new": Server(env=env)}
    out = {tag: {**{k: [] for k in MEASURES}, "cpu": []} for tag in servers}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            pages, cdps = {}, {}
            for tag, server in servers.items():
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                ctx.add_cookies([{"name": "sessionid", "value": session, "url": server.base}])
                ctx.add_init_script(HOOKS_INIT)  # a page from before the hooks ignores it
                pages[tag] = ctx.new_page()
                cdps[tag] = ctx.new_cdp_session(pages[tag])
                cdps[tag].send("Performance.enable")

            def thread_ms(tag):
                return next(m["value"] for m in cdps[tag].send("Performance.getMetrics")["metrics"] if m["name"] == "ThreadTime") * 1000

            for i in range(2 + REPS):
                for tag in ("old", "new") if i % 2 else ("new", "old"):
                    page = pages[tag]
                    page.goto(f"{servers[tag].base}/metrics/runs/{run.pk}/", wait_until="commit")
                    page.wait_for_function(READY, timeout=120_000)
                    if i >= 2:
                        out[tag]["cpu"].append(thread_ms(tag))  # (counted per document: from its start)
                        for k, v in read(page).items():
                            out[tag][k].append(v)
            browser.close()
    finally:
        for server in servers.values():
            server.stop()
    return out


def main() -> None:
    user, session = session_cookie()
    load_before = os.getloadavg()
    runs = {}
    run, _ = tracked_run_create(name="bench-page-ab", project="bench")
    try:
        fill_run(run, STEPS)
        runs[f"18 keys × {STEPS:,} steps"] = compare(run, session)
    finally:
        tracked_run_delete(run=Run.objects.get(pk=run.pk))
    keys = run_page_keys.wide_keys()
    phase = {k: random.Random(k).random() * 6.28 for k in keys[len(GRPO_KEYS):]}
    run, _ = tracked_run_create(name="bench-page-keys-ab", project="bench")
    try:
        run_page_keys.fill(run, keys, 300, 310, phase)
        runs["3,000 keys × 300 steps"] = compare(run, session)
    finally:
        tracked_run_delete(run=Run.objects.get(pk=run.pk))
    load_after = os.getloadavg()
    print(f"\nrun page, this checkout (new) vs OLD_TREE={OLD_TREE} (old), {REPS} loads each, alternated in one session\n")
    print("| run | page | charts start, median / p95 ms | first screen | all first-screen panels drawn | main-thread CPU per load |\n|---|---|---|---|---|---|")
    for name, res in runs.items():
        for tag in ("old", "new"):
            print(f"| {name} | {tag} | " + " | ".join(f"{median(res[tag][k]):.0f} / {pct(res[tag][k], 95):.0f}" for k in [*MEASURES, "cpu"]) + " |")
    print(f"load average (1, 5, 15 min) before: {tuple(round(x, 2) for x in load_before)}, after: {tuple(round(x, 2) for x in load_after)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_page_ab.json").write_text(json.dumps({
        "benchmark": "run_page_ab", "command": "OLD_TREE=… DATABASE_URL=postgres://… .venv/bin/python benchmarks/run_page_ab.py",
        "old_tree": OLD_TREE, "reps": REPS, "viewport": [1400, 1000],
        "means": "ms from navigation start: charts start (hook start / __r1lab_start), first screen drawn, every first-screen panel drawn (ready); "
                 "cpu: the renderer main thread's CPU ms of the document up to ready (Performance.getMetrics ThreadTime, per document)",
        "runs": {name: {tag: {k: {"median": median(v), "p95": pct(v, 95), "values": v} for k, v in res[tag].items()} for tag in res}
                 for name, res in runs.items()},
        "load_average_before": load_before, "load_average_after": load_after, "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
