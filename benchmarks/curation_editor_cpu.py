"""The editor page's own cost, old code against new, on the 100k-example database of curation.py.

Wall time on the shared 2-core machine moves with other people's jobs (curation.py's p95 of an
unchanged page varied 2-3× between runs); the CPU time this process spends on a request
(`time.process_time`) moves much less. Run it from each checkout's root against the same
database, in turns, appending to one result file:

    cd /tmp/old-checkout && DATABASE_URL=postgres://…/r1lab_x .venv/bin/python /path/to/new/benchmarks/curation_editor_cpu.py before
    cd /path/to/new      && DATABASE_URL=postgres://…/r1lab_x .venv/bin/python benchmarks/curation_editor_cpu.py after

Needs benchmarks/curation.py's seeded project with step labels (issue 18). Times the editor of 200
examples that have the annotator's step verdicts (the same ones for every run), as the annotator
and as a reviewer, after 20 warm-up requests; prints and appends to
benchmarks/results/curation_editor_cpu.json (next to this script).
"""
from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "curation_editor_cpu.json"
REQUESTS, WARMUP = 200, 20


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "run"
    sys.path.insert(0, os.getcwd())  # the checkout being measured
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")
    os.environ.setdefault("R1LAB_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    with connection.cursor() as cur:  # plain SQL: the old code has no StepLabel model
        cur.execute("SELECT sl.example_id FROM curation_steplabel sl JOIN auth_user u ON u.id = sl.annotator_id "
                    "WHERE u.username = 'bench-annotator' ORDER BY sl.example_id LIMIT 20000")
        ids = [r[0] for r in cur.fetchall()]
    if not ids:
        sys.exit("no step labels: run benchmarks/curation.py (issue 18's seeding) first")
    rng = random.Random(5)
    urls = [f"/curation/e/{rng.choice(ids)}/" for _ in range(REQUESTS + WARMUP)]
    load_start = round(os.getloadavg()[0], 1)
    rows = {}
    for who in ("bench-annotator", "bench-reviewer"):
        client = Client()
        client.force_login(get_user_model().objects.get(username=who))
        for url in urls[:WARMUP]:
            client.get(url)
        wall, cpu, size = [], [], 0
        for url in urls[WARMUP:]:
            t0, c0 = time.perf_counter(), time.process_time()
            resp = client.get(url)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert resp.status_code == 200, url
            size += len(resp.content)
        pct = lambda xs, q: round(sorted(xs)[int(q * (len(xs) - 1))], 1)  # noqa: E731
        rows[who] = {"wall_median_ms": round(statistics.median(wall), 1), "wall_p95_ms": pct(wall, 0.95),
                     "cpu_median_ms": round(statistics.median(cpu), 1), "cpu_p95_ms": pct(cpu, 0.95), "bytes_mean": size // REQUESTS}
    run = {"label": label, "checkout": os.getcwd(), "load_average_1m_at_start": load_start, "editor": rows}
    print(json.dumps(run))
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps([*runs, run], indent=1) + "\n")


if __name__ == "__main__":
    main()
