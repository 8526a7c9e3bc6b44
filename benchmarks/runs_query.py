"""The runs list's query at 10,000 runs (issue 17 part 3): a query over config values and summary
metrics, sorted by a summary column, one page with its columns.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> .venv/bin/python benchmarks/runs_query.py

Loads BENCH_RUNS runs (default 10,000) in a project of their own, each with a config of ~40 keys
(learning_rate, template, nested optimizer settings, …) and BENCH_KEYS series (default 30) with
their summaries (last/min/max, as ingest keeps them; the points themselves are never read by the
query, so none are written). Then, for each query below, interleaved, BENCH_REPS times: the
selector the page calls (`selectors.runs_find`: count, one sorted page of 100, its columns),
server-side; and the whole page over HTTP (GET /metrics/?q=…, session auth, a real daphne).
Goal: p95 ≤ 200 ms server-side for every query. The runs are deleted at the end.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import time
import urllib.parse
import urllib.request

from _tracking_common import RESULTS, Server, machine, median, pct, setup_django

setup_django()

import psycopg  # noqa: E402
from django.db import connection  # noqa: E402

from r1lab.tracking import selectors  # noqa: E402

N_RUNS = int(os.environ.get("BENCH_RUNS", 10_000))
N_KEYS = int(os.environ.get("BENCH_KEYS", 30))
REPS = int(os.environ.get("BENCH_REPS", 20))
PROJECT = "bench-runs-query"
GOAL_MS = 200

KEYS = (["reward", "reward_std", "rewards/accuracy/mean", "rewards/format/mean", "kl", "entropy", "loss",
         "grad_norm", "completions/mean_length", "frac_reward_zero_std"]
        + [f"train/extra_{i:02d}" for i in range(max(0, N_KEYS - 10))])[:N_KEYS]

QUERIES = {
    "no query (newest first)": ("", "", None),
    "the issue's example": ('config.learning_rate < 2e-6 and reward.last > 0.6 and template = "r1_zero"', "", None),
    "metric filter, sorted by it": ("reward.last > 0.6", "-reward.last", None),
    "or / not / parentheses, sorted by config": (
        'config.learning_rate < 2e-6 or (template = "distill" and not status = "failed")', "config.learning_rate", None),
    "name contains": ('name ~ "grpo-12"', "", None),
    "two metrics, 10 columns": ("rewards/accuracy/mean.max >= 0.9 and kl.last < 0.05", "-rewards/accuracy/mean.max",
                                "reward.last, reward.max, kl.last, entropy.last, loss.min, grad_norm.max, "
                                "config.learning_rate, config.optim.beta, template, config.seed"),
    "sort by a config value, no filter": ("", "-config.optim.beta", None),
}


def load() -> list[int]:
    rng = random.Random(17)
    now = time.time()
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        rows = []
        for i in range(N_RUNS):
            config = {"learning_rate": rng.choice([5e-7, 1e-6, 2e-6, 3e-6, 1e-5]),
                      "template": rng.choice(["r1_zero", "r1_zero", "r1", "distill"]), "seed": i,
                      "num_generations": rng.choice([4, 8, 16]), "beta": rng.choice([0.0, 0.001, 0.04]),
                      "optim": {"beta": rng.choice([0.9, 0.95, 0.99]), "eps": 1e-8, "weight_decay": 0.0},
                      **{f"option_{k:02d}": rng.random() for k in range(30)}}
            status = rng.choice(["succeeded", "succeeded", "failed", "running", "cancelled"])
            rows.append((f"grpo-{i}", PROJECT, json.dumps(config), status, now - (N_RUNS - i) * 60))
        cur.execute("CREATE TEMP TABLE bench_runs (name text, project text, config jsonb, status text, created float8)")
        with cur.copy("COPY bench_runs FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        cur.execute(
            "INSERT INTO tracking_run (name, project, config, external, status, token_hash, created_at, last_seen_at, "
            "notes, first_attempt, attempt, tags) SELECT name, project, config, true, status, '', to_timestamp(created), "
            "now(), '', 1, 1, '{}'::jsonb FROM bench_runs ORDER BY created RETURNING id")
        ids = [r[0] for r in cur.fetchall()]
        with cur.copy("COPY tracking_series (run_id, key, rollup_upto, last_step, last_value, min_value, max_value) "
                      "FROM STDIN") as copy:
            for run_id in ids:
                for key in KEYS:
                    last = rng.random()
                    copy.write_row((run_id, key, -1, 1000, last, min(last, rng.random() * 0.2),
                                    max(last, 0.8 + rng.random() * 0.2)))
        conn.commit()
        conn.autocommit = True
        # what autovacuum does to tables this size soon after a load: statistics, hint bits and the
        # visibility map (index-only scans)
        cur.execute("VACUUM ANALYZE tracking_run")
        cur.execute("VACUUM ANALYZE tracking_series")
    return ids


def cleanup() -> None:
    with connection.cursor() as cur:
        cur.execute("DELETE FROM tracking_series WHERE run_id IN (SELECT id FROM tracking_run WHERE project = %s)",
                    [PROJECT])
        cur.execute("DELETE FROM tracking_run WHERE project = %s", [PROJECT])


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    cleanup()
    t = time.perf_counter()
    ids = load()
    load_s = time.perf_counter() - t
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tests.factories import UserFactory

    user = UserFactory(role="viewer", username=f"bench-{secrets.token_hex(6)}")
    server = None
    try:
        s = SessionStore()
        s[SESSION_KEY], s[BACKEND_SESSION_KEY], s[HASH_SESSION_KEY] = (
            str(user.pk), "django.contrib.auth.backends.ModelBackend", user.get_session_auth_hash())
        s.save()
        server = Server()
        matched = {}

        def selector(q, sort, cols):
            def run():
                table = selectors.runs_find(user=user, query=q, sort=sort, columns=cols, project=PROJECT)
                matched[q] = table.total
            return run

        def page(q, sort, cols):
            params = {"q": q, "sort": sort, "project": PROJECT, **({"cols": cols} if cols is not None else {})}
            req = urllib.request.Request(f"{server.base}/metrics/?{urllib.parse.urlencode(params)}",
                                         headers={"Cookie": f"sessionid={s.session_key}"})

            def run():
                with urllib.request.urlopen(req, timeout=30) as resp:
                    assert resp.status == 200
                    resp.read()
            return run

        cases = {name: {"selector": [], "http": []} for name in QUERIES}
        for rep in range(REPS + 2):  # two warm-up passes, then measured, queries interleaved
            for name, (q, sort, cols) in QUERIES.items():
                a, b = timed(selector(q, sort, cols)), timed(page(q, sort, cols))
                if rep >= 2:
                    cases[name]["selector"].append(a)
                    cases[name]["http"].append(b)
    finally:
        if server is not None:
            server.stop()
        cleanup()
        user.delete()

    print(f"\n{len(ids):,} runs × {len(KEYS)} series (summaries), load {load_s:.0f} s; {REPS} reps each\n")
    print("| query | matches | selector median ms | selector p95 ms | page over HTTP median ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name, (q, sort, cols) in QUERIES.items():
        c = cases[name]
        summary[name] = {"query": q, "sort": sort, "cols": cols, "matches": matched.get(q),
                         "selector_median_ms": median(c["selector"]), "selector_p95_ms": pct(c["selector"], 95),
                         "http_median_ms": median(c["http"]), "http_p95_ms": pct(c["http"], 95)}
        print(f"| {name} | {matched.get(q):,} | {median(c['selector']):.0f} | {pct(c['selector'], 95):.0f} | "
              f"{median(c['http']):.0f} | {pct(c['http'], 95):.0f} |")
    worst = max(v["selector_p95_ms"] for v in summary.values())
    ok = worst <= GOAL_MS
    print(f"\ngoal: every query's p95 ≤ {GOAL_MS} ms server-side (worst {worst:.0f} ms): {'met' if ok else 'NOT met'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runs_query.json").write_text(json.dumps({
        "benchmark": "runs_query", "command": "DATABASE_URL=postgres://… .venv/bin/python benchmarks/runs_query.py",
        "runs": len(ids), "series_per_run": len(KEYS), "reps": REPS, "cases": summary,
        "goal": {"p95_ms_server_side": GOAL_MS}, "worst_p95_ms": worst, "goal_met": ok, "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
