"""The rollout browser at a million rollouts: a step page (64 prompts × 16 completions) rendered
server-side, and filtered queries over the whole run, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> .venv/bin/python benchmarks/rollouts.py

Data: one tracked run holding 977 steps × 64 groups × 16 completions = 1,000,448 rollouts in
tracking_sample, bulk-loaded by one INSERT … SELECT over generate_series (never the ORM row by
row); completions of 150–1,300 characters with think/answer spans, ~30% with reflection markers,
20% zero-variance groups, advantages computed per group. The run is kept between invocations
(BENCH_RELOAD=1 rebuilds it).

Timed: (1) GET /rollouts/runs/<id>/steps/<s>/ through Django's test client in this process (URL
routing, middleware, session auth, selectors, template render: the server-side part, no network),
each request a different step; (2) one page (50 rows) of each filter over the whole run, through
the selector the run page uses; (3) side by side, the distinct-steps list by a loose index scan
(ours) vs a plain SELECT DISTINCT (sample_steps below); (4) the prompt-lineage page
(GET /rollouts/runs/<id>/lineage/, issue 17) with its class filters, sorts and pages, which reads
the rollup tracking.prompt_stats keeps, never the rollouts. It runs on a second run of the same
shape (977 steps × 64 groups × 16 = 1,000,448 rollouts, 4,096 prompts sampled every 64 steps:
62,528 prompt-step rows) whose prompts follow set trajectories, so that every class is populated
(30% learned, 10% forgotten, 10% always solved, 20% never solved, 30% mixed; completions short:
the page never reads them); the first run's solve rates hover around 1/3 and leave every prompt
"mixed". The rollup is rebuilt from the rollouts first (prompt_stats_rebuild, timed), and what it
adds to ingest is timed on a new 1,024-rollout step logged through the real ingest service, with
and without the hook, interleaved (rolled back each time). Warm-up first; medians and p95 of BENCH_REPEAT runs (default 30).
Targets: step page ≤ 300 ms p95, filtered query ≤ 300 ms p95 (issue 8); lineage page ≤ 300 ms p95
(issue 17). BENCH_ONLY=lineage runs (4) alone and keeps the other sections of the results file.
"""
from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # pin threads: nothing here should fan out

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STEPS, GROUPS, G = 977, 64, 16
REPEAT = int(os.environ.get("BENCH_REPEAT", 30))
RUN_NAME = "bench-rollouts-1m"


def setup_django() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("needs DATABASE_URL=postgres://… (a database of your own); skipping")
        sys.exit(0)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


setup_django()

from django.db import connection, transaction  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402

from r1lab.rollouts import selectors  # noqa: E402
from r1lab.tracking.models import Run, Sample  # noqa: E402


def sample_steps(*, run) -> list[int]:
    """The plain query the loose index scan replaced: SELECT DISTINCT step over every row."""
    from r1lab.tracking.models import Sample

    return list(Sample.objects.filter(run=run).values_list("step", flat=True).distinct().order_by("step"))

LOAD_SQL = """
INSERT INTO tracking_sample (run_id, step, "group", "index", dedupe, prompt_id, prompt, completion, think, answer,
    rewards, reward, advantage, length, truncated, correct, reflection_count, language_consistency, language_mixed,
    zero_std_group, extra, created_at)
SELECT %(run)s, s, g, i, g * 16 + i, pid, prompt, completion, think, answer,
    jsonb_build_object('accuracy', acc, 'format', fmt, 'language_consistency', lc), reward,
    CASE WHEN zstd THEN 0.0 ELSE (reward - avg(reward) OVER w) / NULLIF(stddev_pop(reward) OVER w, 0) END,
    length, truncated, acc >= 1, CASE WHEN refl THEN 2 ELSE 0 END, lc, lc < 1, zstd, '{}'::jsonb, now()
FROM (
  SELECT s, g, i, pid, zstd, acc, fmt, lc, refl, length, truncated,
         acc + 0.5 * fmt + 0.1 * lc AS reward,
         'Problem ' || pid || ': what is ' || (s * 64 + g) % 997 || ' + ' || (g * 31) % 89 || '? Think step by step.' AS prompt,
         think,
         '<think>' || think || '</think> <answer>' || answer || '</answer>' AS completion,
         answer
  FROM (
    SELECT s, g, i, pid, zstd, acc, fmt, lc, refl, length, truncated,
           repeat('I add ' || g || ' and ' || i || ' carefully, then carry. ', reps::int)
             || CASE WHEN refl THEN ' Wait, let me recheck the carry. ' ELSE '' END AS think,
           CASE WHEN acc >= 1 THEN ((s * 64 + g) % 997 + (g * 31) % 89)::text ELSE 'unsure' END AS answer
    FROM (
      SELECT s, g, i, 'p' || ((s * 64 + g) %% 4096) AS pid, zstd,
             CASE WHEN zstd THEN ((s + g) %% 2)::float ELSE (((s * 7 + g * 3 + i) %% 3) = 0)::int::float END AS acc,
             CASE WHEN zstd OR i %% 5 <> 4 THEN 1.0 ELSE 0.0 END AS fmt,
             CASE WHEN NOT zstd AND (s * 64 + g + i) %% 23 = 0 THEN 0.8 ELSE 1.0 END AS lc,
             (n * 7919) %% 10 < 3 AS refl,
             4 + (n * 31) %% 32 AS reps,
             40 + ((n * 31) %% 32) * 10 AS length,
             i = 15 AND (s + g) %% 4 = 0 AS truncated
      FROM (SELECT n, n / 1024 AS s, (n / 16) %% 64 AS g, n %% 16 AS i, ((n / 16) %% 5 = 0) AS zstd
            FROM generate_series(0::bigint, %(total)s - 1) AS n) base
    ) a
  ) b
) c
WINDOW w AS (PARTITION BY s, g)
"""


LINEAGE_RUN_NAME = "bench-lineage-1m"
# A prompt's kind is (p / 64) % 10 (independent of its group); its correct completions out of 16 at
# step s follow the kind's trajectory: learned 0 → 16 over steps 200-700, forgotten 16 → 0 over
# 300-700, always 16, never 0, mixed 6-10.
LINEAGE_LOAD_SQL = """
INSERT INTO tracking_sample (run_id, step, "group", "index", dedupe, prompt_id, prompt, completion, think, answer,
    rewards, reward, advantage, length, truncated, correct, reflection_count, language_consistency, language_mixed,
    zero_std_group, extra, created_at)
SELECT %(run)s, s, g, i, g * 16 + i, 'p' || p, 'Problem p' || p || ': what is ' || p || ' + ' || g || '?',
    '<think>I add ' || p || ' and ' || g || '.</think> <answer>' || (p + g + (1 - acc)::int) || '</answer>',
    'I add ' || p || ' and ' || g || '.', (p + g + (1 - acc)::int)::text,
    jsonb_build_object('accuracy', acc, 'format', 1.0), acc + 1.0,
    CASE WHEN k IN (0, 16) THEN 0.0 ELSE (acc - k / 16.0) / sqrt(k / 16.0 * (1 - k / 16.0)) END,
    40 + i, false, acc >= 1, 0, 1.0, false, k IN (0, 16), jsonb_build_object('gold', (p + g)::text), now()
FROM (
  SELECT s, g, i, p, k, (i < k)::int::float AS acc
  FROM (
    SELECT s, g, i, p,
      CASE WHEN (p / 64) %% 10 < 3 THEN round(16 * least(1.0, greatest(0.0, (s - 200) / 500.0)))::int
           WHEN (p / 64) %% 10 = 3 THEN round(16 * (1 - least(1.0, greatest(0.0, (s - 300) / 400.0))))::int
           WHEN (p / 64) %% 10 = 4 THEN 16
           WHEN (p / 64) %% 10 < 7 THEN 0
           ELSE 6 + s %% 5 END AS k
    FROM (SELECT n / 1024 AS s, (n / 16) %% 64 AS g, n %% 16 AS i, ((n / 1024) * 64 + (n / 16) %% 64) %% 4096 AS p
          FROM generate_series(0::bigint, %(total)s - 1) AS n) base
  ) a
) b
"""


def ensure_lineage_data() -> Run:
    total = STEPS * GROUPS * G
    run = Run.objects.filter(name=LINEAGE_RUN_NAME, project="bench").first()
    if run is not None and os.environ.get("BENCH_RELOAD") != "1" and Sample.objects.filter(run=run).count() == total:
        return run
    if run is not None:
        Sample.objects.filter(run=run).delete()
        run.delete()
    run = Run.objects.create(name=LINEAGE_RUN_NAME, project="bench")
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(LINEAGE_LOAD_SQL.replace("%%", "%").replace("%(run)s", str(run.pk)).replace("%(total)s", str(total)))
    with connection.cursor() as cur:
        cur.execute("ANALYZE tracking_sample")
    print(f"loaded {total:,} rollouts of the lineage run in {time.perf_counter() - t0:.0f} s")
    return run


def ensure_data() -> Run:
    total = STEPS * GROUPS * G
    run = Run.objects.filter(name=RUN_NAME, project="bench").first()
    if run is not None and os.environ.get("BENCH_RELOAD") != "1":
        n = Sample.objects.filter(run=run).count()
        if n == total:
            return run
    if run is not None:
        Sample.objects.filter(run=run).delete()
        run.delete()
    run = Run.objects.create(name=RUN_NAME, project="bench")
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(LOAD_SQL.replace("%%", "%").replace("%(run)s", str(run.pk)).replace("%(total)s", str(total)))
    with connection.cursor() as cur:
        cur.execute("ANALYZE tracking_sample")
    print(f"loaded {total:,} rollouts in {time.perf_counter() - t0:.0f} s")
    return run


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def timed(fn, repeat: int = REPEAT, warmup: int = 3) -> dict:
    for k in range(warmup):
        fn(-1 - k)
    ms = []
    for k in range(repeat):
        t0 = time.perf_counter()
        fn(k)
        ms.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(pct(ms, 0.95), 1), "max_ms": round(max(ms), 1), "n": repeat}


def lineage_section(client) -> dict:
    """The prompt-lineage page at a million rollouts, and what its rollup costs to build and to keep."""
    from r1lab.tracking import prompt_stats
    from r1lab.tracking.ingest import parse_log_body
    from r1lab.tracking.models import PromptClassStep, PromptLineage, PromptStepStat
    from r1lab.tracking.services import tracked_run_log

    out: dict = {"page": {}, "rollup": {}}
    run = ensure_lineage_data()
    out["run"] = LINEAGE_RUN_NAME
    # Built from the rollouts each time (what `manage.py prompt_lineage_rebuild` does for a run
    # logged before the rollup existed): its time is measured, and the result is the same.
    t0 = time.perf_counter()
    prompt_stats.prompt_stats_rebuild(run_id=run.pk)
    out["rollup"]["rebuild from 1M rollouts, s"] = round(time.perf_counter() - t0, 1)
    with connection.cursor() as cur:
        cur.execute("ANALYZE tracking_promptstepstat; ANALYZE tracking_promptlineage; ANALYZE tracking_promptclassstep")
    out["prompts"] = PromptLineage.objects.filter(run=run).count()
    out["prompt_step_rows"] = PromptStepStat.objects.filter(run=run).count()
    out["rows_read_by_the_chart"] = PromptClassStep.objects.filter(run=run).count()
    counts = dict(PromptLineage.objects.filter(run=run).values_list("cls").annotate(n=Count("id")))
    out["classes"] = counts

    def page(query: str):
        def go(k: int):
            r = client.get(f"/rollouts/runs/{run.pk}/lineage/{query}")
            assert r.status_code == 200, r.status_code
            return r
        return go

    r = page("")(0)
    assert r.content.count(b"<tr data-prompt=") == 50, "the lineage page must show a page of 50 prompts"
    for label, q in [("all prompts, by class", ""), ("?cls=learned", "?cls=learned"), ("?cls=never", "?cls=never"),
                     ("?cls=zero_variance&sort=-delta", "?cls=zero_variance&sort=-delta"), ("?sort=rate (overall)", "?sort=rate"),
                     ("?sort=-last_step&offset=2000 (page 41)", "?sort=-last_step&offset=2000")]:
        out["page"][label] = timed(page(q))
    out["page"]["timeline selector alone"] = timed(lambda k: selectors.prompt_lineage_timeline(run=run))

    # The ingest hook: a new step of 64 groups × 16 through tracked_run_log (parse + store +
    # zero-std marking + the rollup), rolled back after each; and the rollup update alone.
    step0 = STEPS + 100
    rng = random.Random(17)

    def batch(k: int) -> bytes:
        step = step0 + k
        samples = [{"step": step, "group": g, "index": i, "prompt_id": f"p{(step * 64 + g) % 4096}",
                    "prompt": f"Problem p{(step * 64 + g) % 4096}", "completion": f"<think>try {i}</think> <answer>{i}</answer>",
                    "rewards": {"accuracy": float(rng.random() < 0.4), "format": 1.0}, "gold": "7"}
                   for g in range(GROUPS) for i in range(G)]
        return json.dumps({"samples": samples}).encode()

    bodies = {k: batch(k) for k in range(-3, REPEAT)}

    class Rollback(Exception):
        pass

    def ingest(k: int, hook: bool = True):
        if not hook:
            prompt_stats.prompt_stats_update = lambda **kw: None
        try:
            with transaction.atomic():
                tracked_run_log(run_id=run.pk, parsed=parse_log_body(bodies[k]))
                raise Rollback
        except Rollback:
            pass

    hook_ms: list[float] = []
    original_update = prompt_stats.prompt_stats_update

    def timed_update(**kw):
        t0 = time.perf_counter()
        original_update(**kw)
        hook_ms.append((time.perf_counter() - t0) * 1000)

    # Interleaved, with and without the hook, so that both see the same load and caches.
    with_hook: list[float] = []
    without: list[float] = []
    for k in range(-3, REPEAT):
        for hook, into in ((True, with_hook), (False, without)):
            prompt_stats.prompt_stats_update = timed_update
            t0 = time.perf_counter()
            try:
                ingest(k, hook=hook)
            finally:
                prompt_stats.prompt_stats_update = original_update
            if k >= 0:
                into.append((time.perf_counter() - t0) * 1000)

    def stats(ms: list[float]) -> dict:
        return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(pct(ms, 0.95), 1), "max_ms": round(max(ms), 1), "n": len(ms)}

    out["rollup"]["ingest a 1,024-rollout step (with the hook)"] = stats(with_hook)
    out["rollup"]["ingest a 1,024-rollout step (hook off, interleaved)"] = stats(without)
    out["rollup"]["the hook alone (prompt_stats_update)"] = stats(hook_ms[-REPEAT:])
    return out


def main() -> None:
    load_before = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: say how busy it was
    run = ensure_data()
    if os.environ.get("BENCH_ONLY") == "lineage":
        return main_lineage_only(run, load_before)
    rows_total = Sample.objects.count()
    rows_run = STEPS * GROUPS * G
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    rng = random.Random(8)
    steps = rng.sample(range(STEPS), REPEAT + 10)

    def page(query: str = ""):
        def go(k: int):
            r = client.get(f"/rollouts/runs/{run.pk}/steps/{steps[k]}/{query}")
            assert r.status_code == 200, r.status_code
            return r
        return go

    r = page()(0)
    html_bytes = len(r.content)
    assert r.content.count(b'class="completion adv-') == GROUPS * G, "the step page must show all 1,024 completions"

    results = {"step_page": {}, "filtered_query": {}, "steps_list": {}}
    for label, q in [("all 1,024 completions", ""), ("?correct=0 (whole groups, matches marked)", "?correct=0"),
                     ("?zero_std=1", "?zero_std=1"), ("?sort=-advantage", "?sort=-advantage"),
                     ("?reflection=1 (aha link: + prompts whose rate moved)", "?reflection=1")]:
        results["step_page"][label] = timed(page(q))

    filters = [
        ("correct=false", {"correct": False}, None),
        ("zero-variance groups", {"zero_std": True}, None),
        ("truncated", {"truncated": True}, None),
        ("language-mixed", {"language_mixed": True}, None),
        ("has reflection & incorrect", {"has_reflection": True, "correct": False}, None),
        ("reward ≥ 1.55, by advantage ↓", {"reward_min": 1.55}, "-advantage"),
        ("length 300–320, by length ↑", {"length_min": 300, "length_max": 320}, "length"),
        ("truncated & language-mixed & incorrect (sparse)", {"truncated": True, "language_mixed": True, "correct": False}, None),
        ("text 'recheck' (common), one 8-step window", {"text": "recheck"}, "window"),
        ("text 'zebra' (no match), one 8-step window", {"text": "zebra"}, "window"),
        ("REFERENCE text 'zebra' over all steps (what the window avoids)", {"text": "zebra"}, "all"),
    ]
    windows = selectors.text_windows(run=run)
    for label, f, order in filters:
        def go(k, f=f, order=order):
            lo = hi = None
            if order == "window":  # the run page's text search: window k of the run's logged steps
                lo, hi = windows[(k * 7) % len(windows)]
            rows, _ = selectors.run_search(run=run, filters=f, order=None if order in ("window", "all") else order,
                                           offset=0, limit=50, step_min=lo, step_max=hi)
            return rows
        reference = label.startswith("REFERENCE")
        results["filtered_query"][label] = timed(go, repeat=3 if reference else REPEAT, warmup=0 if reference else 1)
        results["filtered_query"][label]["rows"] = len(go(0))

    lineage = lineage_section(client)
    results["steps_list"]["loose index scan (rollouts.selectors.run_sample_steps)"] = timed(lambda k: selectors.run_sample_steps(run=run), repeat=10, warmup=1)
    results["steps_list"]["SELECT DISTINCT (sample_steps)"] = timed(lambda k: sample_steps(run=run), repeat=10, warmup=1)
    assert selectors.run_sample_steps(run=run) == sample_steps(run=run)

    print(f"\nload average (1, 5, 15 min) before {load_before}, after {[round(x, 2) for x in os.getloadavg()]} on {os.cpu_count()} CPUs")
    print(f"rollouts in tracking_sample: {rows_total:,} (this run: {rows_run:,}); step page HTML {html_bytes / 1e6:.2f} MB\n")
    print(f"{'measurement':<62}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for section, rows in results.items():
        print(f"-- {section}")
        for label, v in rows.items():
            print(f"{label:<62}{v['median_ms']:>10}{v['p95_ms']:>10}{v['max_ms']:>10}")
    target = 300.0
    step_ok = all(v["p95_ms"] <= target for v in results["step_page"].values())
    filt = {k: v for k, v in results["filtered_query"].items() if not k.startswith("REFERENCE")}
    filt_ok = all(v["p95_ms"] <= target for v in filt.values())
    lineage_ok = print_lineage(lineage, target)
    print(f"\nstep page p95 ≤ {target:.0f} ms: {'yes' if step_ok else 'NO'}; filtered queries p95 ≤ {target:.0f} ms: {'yes' if filt_ok else 'NO'} (REFERENCE rows excluded)")
    out = {
        "benchmark": "rollouts", "command": "DATABASE_URL=postgres://… .venv/bin/python benchmarks/rollouts.py",
        "rows_in_table": rows_total, "rows_in_run": rows_run, "steps": STEPS, "groups_per_step": GROUPS, "G": G,
        "step_page_html_bytes": html_bytes, "repeat": REPEAT, "target_p95_ms": target,
        "step_page_meets_target": step_ok, "filtered_queries_meet_target": filt_ok, "results": results,
        "prompt_lineage": {**lineage, "meets_target": lineage_ok, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]]},
        "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "postgres": connection.cursor().connection.info.server_version},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollouts.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS / 'rollouts.json'}")


def print_lineage(lineage: dict, target: float) -> bool:
    print(f"\n-- prompt lineage: {lineage['prompts']:,} prompts, {lineage['prompt_step_rows']:,} prompt-step rows "
          f"({lineage['rows_read_by_the_chart']:,} read by the chart); classes {lineage['classes']}")
    for section in ("page", "rollup"):
        for label, v in lineage[section].items():
            if isinstance(v, dict):
                print(f"{label:<62}{v['median_ms']:>10}{v['p95_ms']:>10}{v['max_ms']:>10}")
            else:
                print(f"{label:<62}{v:>10}")
    ok = all(v["p95_ms"] <= target for k, v in lineage["page"].items() if k != "timeline selector alone")
    print(f"lineage page p95 ≤ {target:.0f} ms: {'yes' if ok else 'NO'}")
    return ok


def main_lineage_only(run, load_before) -> None:
    """BENCH_ONLY=lineage: section (4) alone, written into the results file next to the others."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    lineage = lineage_section(client)
    ok = print_lineage(lineage, 300.0)
    path = RESULTS / "rollouts.json"
    out = json.loads(path.read_text()) if path.exists() else {"benchmark": "rollouts"}
    out["prompt_lineage"] = {**lineage, "meets_target": ok, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "command": "BENCH_ONLY=lineage DATABASE_URL=postgres://… .venv/bin/python benchmarks/rollouts.py",
                             "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]]}
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote the prompt_lineage section of {path}")


if __name__ == "__main__":
    main()
