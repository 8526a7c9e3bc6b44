"""Query latency of the downsampler on a 1,000,000-point series (≤ 2,000 points out), server-side,
side by side with a one-pass SQL aggregation over the raw points (width_bucket + GROUP BY).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> .venv/bin/python benchmarks/query.py

Cases: the whole series; random zoom windows (10%, 1%); and the same through HTTP
(`GET /metrics/runs/<id>/data.json`, session auth) for the end-to-end number. The first query
builds the rollups (reported separately); after that every query reads rollups + raw edges.
Goal (issue 6): whole-series median ≤ 50 ms.
"""
from __future__ import annotations

import json
import os
import random
import time
import urllib.request

from _tracking_common import RESULTS, Server, machine, median, pct, setup_django

setup_django()

import psycopg  # noqa: E402
from django.db import connection  # noqa: E402

from r1lab.tracking import store  # noqa: E402
from r1lab.tracking.models import Run  # noqa: E402
from r1lab.tracking.services import tracked_run_create, tracked_run_delete  # noqa: E402

N = int(os.environ.get("BENCH_SERIES_POINTS", 1_000_000))
REPS = int(os.environ.get("BENCH_REPS", 30))
MAX_POINTS = 2000


def load_series() -> tuple[Run, int]:
    run, _ = tracked_run_create(name="bench-query", project="bench")
    sid = store.series_ids(run_id=run.pk, keys=["reward"])["reward"]
    rng = random.Random(3)
    ts = time.time()
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        with cur.copy("COPY tracking_point (series_id, step, value, ts) FROM STDIN") as copy:
            for s in range(N):
                copy.write_row((sid, s, rng.gauss(0, 1) + s / N, ts + s))
        cur.execute("ANALYZE tracking_point")
    return run, sid


def timed(fn, reps):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def raw_sql(sid):
    with connection.cursor() as cur:
        cur.execute(
            "SELECT width_bucket(step, 0, %s, 1000) b, min(value), max(value), count(*) FROM tracking_point "
            "WHERE series_id = %s GROUP BY b ORDER BY b", [N, sid])
        cur.fetchall()


def main() -> None:
    run, sid = load_series()
    try:
        t = time.perf_counter()
        first = store.series_window(sid=sid, max_points=MAX_POINTS)
        build_ms = (time.perf_counter() - t) * 1000
        assert first["total"] == N and len(first["x"]) <= MAX_POINTS
        rng = random.Random(5)

        def zoom(frac):
            def q():
                width = int(N * frac)
                lo = rng.randrange(0, N - width)
                w = store.series_window(sid=sid, min_step=lo, max_step=lo + width, max_points=MAX_POINTS)
                assert len(w["x"]) <= MAX_POINTS + 2
            return q

        cases = {}
        for _ in range(2):  # warm-up pass, then measured (interleaved)
            cases = {"rollups: whole series": [], "rollups: 10% window": [], "rollups: 1% window": [], "raw SQL width_bucket: whole series": []}
            for _ in range(REPS):
                cases["rollups: whole series"] += timed(lambda: store.series_window(sid=sid, max_points=MAX_POINTS), 1)
                cases["rollups: 10% window"] += timed(zoom(0.10), 1)
                cases["rollups: 1% window"] += timed(zoom(0.01), 1)
                if len(cases["raw SQL width_bucket: whole series"]) < 10:
                    cases["raw SQL width_bucket: whole series"] += timed(lambda: raw_sql(sid), 1)
        # end to end over HTTP (session auth), with a real server
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
        from django.contrib.sessions.backends.db import SessionStore

        from tests.factories import UserFactory

        import secrets

        user = UserFactory(role="viewer", username=f"bench-{secrets.token_hex(6)}")
        s = SessionStore()
        s[SESSION_KEY], s[BACKEND_SESSION_KEY], s[HASH_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend", user.get_session_auth_hash()
        s.save()
        server = Server()
        try:
            url = f"{server.base}/metrics/runs/{run.pk}/data.json?keys=reward&max_points={MAX_POINTS}"
            req = urllib.request.Request(url, headers={"Cookie": f"sessionid={s.session_key}"})
            fetch = lambda: json.loads(urllib.request.urlopen(req, timeout=30).read())  # noqa: E731
            assert fetch()["series"]["reward"]["total"] == N
            timed(fetch, 3)
            cases["HTTP data.json: whole series"] = timed(fetch, REPS)
        finally:
            server.stop()

    finally:
        tracked_run_delete(run=Run.objects.get(pk=run.pk))
    print(f"\n{N:,}-point series, ≤{MAX_POINTS} points out; first query (builds rollups): {build_ms:,.0f} ms\n")
    print("| case | median ms | p95 ms | n |\n|---|---|---|---|")
    summary = {}
    for k, v in cases.items():
        summary[k] = {"median_ms": median(v), "p95_ms": pct(v, 95), "n": len(v)}
        print(f"| {k} | {median(v):.1f} | {pct(v, 95):.1f} | {len(v)} |")
    ok = summary["rollups: whole series"]["median_ms"] <= 50
    print(f"\ngoal: whole-series median ≤ 50 ms server-side: {'met' if ok else 'NOT met'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "query.json").write_text(json.dumps({
        "benchmark": "query", "command": "DATABASE_URL=postgres://… .venv/bin/python benchmarks/query.py",
        "series_points": N, "max_points": MAX_POINTS, "first_query_builds_rollups_ms": build_ms,
        "cases": summary, "goal": {"whole_series_median_ms": 50}, "goal_met": ok, "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
