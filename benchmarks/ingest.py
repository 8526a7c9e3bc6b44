"""Ingest throughput: points/s through the real HTTP API (daphne → Django → PostgreSQL) side by
side with a raw COPY of the same rows into the same table (the physical limit), in one run, and
through `r1lab_client` with its default settings (what a user's script gets).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> REDIS_URL=redis://127.0.0.1:6379/<n> \
        .venv/bin/python benchmarks/ingest.py

Each round writes BENCH_POINTS points (default 1,000,000) as batches of 10,000 (20 keys × 500
steps) into a fresh run: COPY (psycopg 3 `COPY … FROM STDIN`, one transaction per batch) and the
API (`POST /api/v1/runs/{id}/log`, bodies encoded before the clock starts, keep-alive
connections). The client row logs the same points step by step, as a trainer does
(`run.log({20 keys}, step=s)` for every step, then `run.flush()`), with `Run(run_url, token)`'s
defaults: the per-step dicts are built before the clock starts, the JSON encoding and the
requests are timed. Rounds alternate COPY / API / client; a warm-up of each runs first. Medians
reported. Goals: API ≥ 100,000 points/s and ≥ 50% of COPY (issue 6); client defaults ≥ 100,000
points/s (issue 14).

Then the latency a slow trainer sees: one step of 18 keys a second, for LATENCY_STEPS steps, with
the client's defaults and with `max_in_flight=0` (every batch sent, and its answer awaited, when
the next step starts, as the client did before issue 14): milliseconds from the next step's `log`
call (the step's end) until the step's points are in PostgreSQL.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time

from _tracking_common import RESULTS, Server, machine, median, setup_django

setup_django()

import orjson  # noqa: E402
import psycopg  # noqa: E402

from r1lab.tracking import store  # noqa: E402
from r1lab.tracking.models import Run  # noqa: E402
from r1lab.tracking.services import tracked_run_create, tracked_run_delete  # noqa: E402
from r1lab_client import Run as ClientRun  # noqa: E402

N_POINTS = int(os.environ.get("BENCH_POINTS", 1_000_000))
N_KEYS = 20
STEPS_PER_BATCH = 500
BATCH = N_KEYS * STEPS_PER_BATCH
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
LATENCY_STEPS = int(os.environ.get("LATENCY_STEPS", 8))
KEYS = [f"bench/metric_{i:02d}" for i in range(N_KEYS)]


def batches(n_points: int, seed: int):
    """[(step, key, value, ts)] per batch of BATCH points."""
    rng = random.Random(seed)
    ts = time.time()
    out = []
    for b in range(n_points // BATCH):
        rows = []
        for step in range(b * STEPS_PER_BATCH, (b + 1) * STEPS_PER_BATCH):
            for key in KEYS:
                rows.append((step, key, rng.random(), ts + step * 0.01))
        out.append(rows)
    return out


def bodies_of(data) -> list[bytes]:
    return [orjson.dumps({"metrics": [{"step": s, "key": k, "value": v, "ts": t} for s, k, v, t in rows]}) for rows in data]


def api_round(base: str, data, connections: int) -> float:
    run, token = tracked_run_create(name="bench-ingest-api", project="bench")
    bodies = bodies_of(data)
    host, port = base.split("//")[1].split(":")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    errors = []

    def worker(chunk):
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        for body in chunk:
            conn.request("POST", f"/api/v1/runs/{run.pk}/log", body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status != 200:
                errors.append(payload[:200])
        conn.close()

    chunks = [bodies[i::connections] for i in range(connections)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"API errors: {errors[:3]}")
    stored = sum(1 for _ in [0])  # noqa: F841  (count below)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM tracking_point p JOIN tracking_series s ON s.id = p.series_id WHERE s.run_id = %s", [run.pk])
        n = cur.fetchone()[0]
    assert n == len(data) * BATCH, (n, len(data) * BATCH)
    tracked_run_delete(run=Run.objects.get(pk=run.pk))
    return n / elapsed


def _stored(run_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM tracking_point p JOIN tracking_series s ON s.id = p.series_id WHERE s.run_id = %s", [run_id])
        return cur.fetchone()[0]


def client_round(base: str, data) -> float:
    """r1lab_client with its default batching: one `log` call per step, as a trainer makes."""
    import tempfile

    run, token = tracked_run_create(name="bench-ingest-client", project="bench")
    steps: dict[int, dict] = {}
    for rows in data:
        for s, k, v, _ in rows:
            steps.setdefault(s, {})[k] = v
    calls = list(steps.items())
    with tempfile.TemporaryDirectory() as spool:
        client = ClientRun(f"{base}/api/v1/runs/{run.pk}", token, spool_dir=spool)
        started = time.perf_counter()
        for step, metrics in calls:
            client.log(metrics, step=step)
        if not client.flush():
            raise RuntimeError(f"client left batches in its spool: {client.pending()}")
        elapsed = time.perf_counter() - started
        batches = client.sent_batches
    n = _stored(run.pk)
    assert n == len(data) * BATCH, (n, len(data) * BATCH)
    tracked_run_delete(run=Run.objects.get(pk=run.pk))
    client_round.batches = batches
    return n / elapsed


def latency_round(base: str, **client_kw) -> list[float]:
    """A trainer logging one step (18 keys) a second: ms from the step's end (the next step's
    `log`) until its points are stored."""
    import tempfile

    from django.db import connection

    run, token = tracked_run_create(name="bench-ingest-latency", project="bench")
    keys = KEYS[:18]
    out = []
    with tempfile.TemporaryDirectory() as spool, connection.cursor() as cur:
        client = ClientRun(f"{base}/api/v1/runs/{run.pk}", token, spool_dir=spool, **client_kw)
        next_at = time.monotonic()
        for step in range(LATENCY_STEPS + 1):
            time.sleep(max(0.0, next_at - time.monotonic()))  # the trainer's work
            next_at += 1.0
            started = time.perf_counter()
            client.log({k: random.random() for k in keys}, step=step)
            while step:
                cur.execute("SELECT count(*) FROM tracking_point p JOIN tracking_series s ON s.id = p.series_id "
                            "WHERE s.run_id = %s AND p.step = %s", [run.pk, step - 1])
                if cur.fetchone()[0] == len(keys):
                    out.append((time.perf_counter() - started) * 1000)
                    break
                time.sleep(0.002)
        client.finish("succeeded")
    tracked_run_delete(run=Run.objects.get(pk=run.pk))
    return out


def copy_round(data) -> float:
    run, _ = tracked_run_create(name="bench-ingest-copy", project="bench")
    ids = store.series_ids(run_id=run.pk, keys=KEYS)
    rows_per_batch = [[(ids[k], s, v, t) for s, k, v, t in rows] for rows in data]
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        started = time.perf_counter()
        for rows in rows_per_batch:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy("COPY tracking_point (series_id, step, value, ts) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        elapsed = time.perf_counter() - started
    n = sum(len(r) for r in rows_per_batch)
    tracked_run_delete(run=Run.objects.get(pk=run.pk))
    return n / elapsed


def main() -> None:
    data = batches(N_POINTS, seed=1)
    server = Server()
    try:
        api_round(server.base, data[:2], 1)  # warm-up: imports, connections, caches
        copy_round(data[:2])
        client_round(server.base, data[:2])
        results = {"copy": [], "api_1conn": [], "api_2conn": [], "client_defaults": []}
        client_batches = []
        for r in range(ROUNDS):
            results["copy"].append(copy_round(data))
            results["api_1conn"].append(api_round(server.base, data, 1))
            results["client_defaults"].append(client_round(server.base, data))
            client_batches.append(client_round.batches)
            results["api_2conn"].append(api_round(server.base, data, 2))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items()), flush=True)
        latency = {"client_defaults": latency_round(server.base), "synchronous": latency_round(server.base, max_in_flight=0)}
    finally:
        server.stop()
    med = {k: median(v) for k, v in results.items()}
    best_api = max(med["api_1conn"], med["api_2conn"])
    client_goal_met = med["client_defaults"] >= 100_000
    print("\n| path | points/s (median of %d) | vs COPY |" % ROUNDS)
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:,.0f} | {v / med['copy']:.0%} |")
    goal = {"points_per_s": 100_000, "fraction_of_copy": 0.5}
    verdict = best_api >= goal["points_per_s"] and best_api / med["copy"] >= goal["fraction_of_copy"]
    print(f"\nbest API {best_api:,.0f} points/s = {best_api / med['copy']:.0%} of COPY; goal ≥100,000/s and ≥50%: {'met' if verdict else 'NOT met'}")
    print(f"r1lab_client defaults {med['client_defaults']:,.0f} points/s in {client_batches} requests per round "
          f"({med['client_defaults'] / med['api_1conn']:.0%} of the 1-connection API); goal ≥100,000/s: "
          f"{'met' if client_goal_met else 'NOT met'}")
    lat = {k: {"median_ms": median(v), "max_ms": max(v)} for k, v in latency.items()}
    print("a step a second, step end → stored: " + ", ".join(
        f"{k} median {v['median_ms']:.1f} ms (max {v['max_ms']:.1f})" for k, v in lat.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps({
        "benchmark": "ingest", "command": "DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python benchmarks/ingest.py",
        "points_per_round": len(data) * BATCH, "batch_points": BATCH, "rounds": ROUNDS,
        "points_per_s": results, "median_points_per_s": med, "best_api_fraction_of_copy": best_api / med["copy"],
        "goal": goal, "goal_met": verdict,
        "client_defaults": {"what": "r1lab_client.Run(run_url, token) defaults, one log() per step of 20 keys, then flush()",
                            "requests_per_round": client_batches, "goal_points_per_s": 100_000,
                            "goal_met": client_goal_met},
        "step_end_to_stored_ms": {"what": "one step of 18 keys a second; from the next step's log() until the step's "
                                          "points are in PostgreSQL; synchronous = max_in_flight=0 (sent and awaited at the step's end, as before issue 14)",
                                  "steps": LATENCY_STEPS, **lat, "samples_ms": latency},
        "machine": machine(),
        "channel_layer": "redis" if os.environ.get("REDIS_URL") else "in-memory",
    }, indent=2))


if __name__ == "__main__":
    main()
