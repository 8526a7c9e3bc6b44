"""Curation at scale: queue, editor and search pages over 100,000 examples, and a 10,000-row import.

Step labels present (issue 18): every reasoning is in paragraphs (steps), and every example past
draft has both annotators' step verdicts and labels; the editor is timed on examples that have
the annotator's verdicts, and for a reviewer, who sees every annotator's verdicts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/r1lab_h9 .venv/bin/python benchmarks/curation.py

History page only (issue 15: the bounded revision diff; small data, no 100k seeding):

    BENCH_CURATION_ONLY=history DATABASE_URL=postgres://… .venv/bin/python benchmarks/curation.py

times the history page comparing two revisions of 6,000 words and of the field's maximum length
(edited and rewritten), and difflib's word diff (the code before) on growing texts; it writes
benchmarks/results/curation_history.json.

Optional: BENCH_CURATION_REFERENCE=path/to/an/earlier/curation.json (e.g. the same script run from an
older checkout on the same database just before) is copied into the result as "reference", so a
before/after pair taken minutes apart on the same data sits in one file.

Needs PostgreSQL (a database of your own: it adds a 100k-example project, kept for reruns).
"Server time" is the time Django takes to answer the request in-process (test Client: URL
resolution, middleware, session auth, view, queries, template), measured with perf_counter
around each request; the network and the ASGI server are not in it. Each page is warmed up,
then requested N times; medians and p95 are reported. Goals (issue 7): queue and editor p95
≤ 100 ms, full-text search p95 ≤ 200 ms. The import is timed end to end through the services
the page and the Celery task call (parse + validate, checks with training_backend's rewards,
one-transaction write), and reports rows/s.
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
N_EXAMPLES = int(os.environ.get("BENCH_CURATION_EXAMPLES", "100000"))
N_IMPORT = int(os.environ.get("BENCH_CURATION_IMPORT_ROWS", "10000"))
REQUESTS = int(os.environ.get("BENCH_CURATION_REQUESTS", "200"))
REQUESTS_HISTORY = int(os.environ.get("BENCH_CURATION_HISTORY_REQUESTS", "20"))
REQUESTS_AGREEMENT = int(os.environ.get("BENCH_CURATION_AGREEMENT_REQUESTS", "5"))
WARMUP = 20
PROJECT_SLUG = f"bench-{N_EXAMPLES}"

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")


def setup_django() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("needs DATABASE_URL=postgres://… (a database of your own); skipping")
        sys.exit(0)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")
    os.environ.setdefault("R1LAB_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# A Zipf-like synthetic vocabulary: word rank r appears with weight 1/r, like real text; the
# search queries pick common, middling and rare words, and a two-word query.
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "dor", "len", "mat", "rix", "gon"]


def vocabulary(n: int = 5000) -> list[str]:
    rng = random.Random(7)
    words, seen = [], set()
    while len(words) < n:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_text(rng: random.Random, vocab: list[str], cum_weights: list[float], n_words: int) -> str:
    return " ".join(rng.choices(vocab, cum_weights=cum_weights, k=n_words))


def zipf_cum_weights(n: int) -> list[float]:
    return list(itertools.accumulate(1.0 / (r + 1) for r in range(n)))


def ensure_data(vocab: list[str]) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction

    from r1lab.curation.services.projects import project_create
    from r1lab.curation.models import Assignment, CurationProject, Example, Label, Revision, StepLabel
    from r1lab.curation.steps import entries_from, split_steps

    User = get_user_model()
    users = {}
    for name, role in (("bench-annotator", "annotator"), ("bench-annotator-2", "annotator"), ("bench-reviewer", "reviewer")):
        user, _ = User.objects.get_or_create(username=name)
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        users[name] = user
    project = CurationProject.objects.filter(slug=PROJECT_SLUG).first()
    if (project is not None and Example.objects.filter(project=project).count() == N_EXAMPLES
            and StepLabel.objects.filter(example__project=project).exists()):  # seeded with step labels (issue 18)
        return {"project": project, "users": users, "seeded_s": None}
    if project is not None:
        project.delete()
    started = time.perf_counter()
    project = project_create(name=f"Benchmark {N_EXAMPLES}", slug=PROJECT_SLUG, user=users["bench-reviewer"], overlap=2)
    project.annotators.set([users["bench-annotator"], users["bench-annotator-2"]])
    rng = random.Random(11)
    step_rng = random.Random(18)  # its own: the examples are the same as those seeded before issue 18
    weights = zipf_cum_weights(len(vocab))
    statuses = ["draft"] * 6 + ["submitted"] * 2 + ["approved", "rejected"]
    sources = ["imported"] * 7 + ["rollout", "rejection_sampling", "manual"]
    batch = 5000
    for start in range(0, N_EXAMPLES, batch):
        with transaction.atomic():
            rows = []
            for i in range(start, min(start + batch, N_EXAMPLES)):
                words = make_text(rng, vocab, weights, rng.randint(60, 250)).split(" ")
                reasoning = "\n\n".join(" ".join(words[k:k + 20]) for k in range(0, len(words), 20))  # steps: 3-13 paragraphs
                prompt = make_text(rng, vocab, weights, rng.randint(8, 30)) + "?"
                rows.append(Example(
                    project=project, prompt=prompt, reasoning=reasoning, summary=str(i % 97), gold_answer=str(i % 97),
                    language="en" if i % 10 else "zh", source=rng.choice(sources), status=rng.choice(statuses),
                    format_score=1.0, accuracy=float(i % 3 != 0), language_score=1.0 if i % 10 else 0.7,
                    length=len(reasoning) + 30, reflection_count=i % 4,
                ))
            created = Example.objects.bulk_create(rows, batch_size=batch)
            Revision.objects.bulk_create([
                Revision(example_id=e.pk, number=1, author=users["bench-reviewer"], note="bench", changed_fields=["prompt"],
                         prompt=e.prompt, reasoning=e.reasoning, summary=e.summary, gold_answer=e.gold_answer, language=e.language)
                for e in created
            ], batch_size=batch)
            Assignment.objects.bulk_create([
                Assignment(example_id=e.pk, user=u, project=project, done=e.status != "draft")
                for e in created for u in (users["bench-annotator"], users["bench-annotator-2"])
            ], batch_size=batch)
            Label.objects.bulk_create([
                Label(example_id=e.pk, annotator=u, values={"quality": rng.randint(1, 5), "correct": rng.random() < 0.8})
                for e in created if e.status != "draft" for u in (users["bench-annotator"], users["bench-annotator-2"])
            ], batch_size=batch)
            step_labels = []
            for e in created:
                if e.status == "draft":
                    continue
                split = split_steps(e.reasoning, project.step_split)
                for u in (users["bench-annotator"], users["bench-annotator-2"]):
                    verdicts = {i: step_rng.choices(("correct", "incorrect", "neutral"), weights=(8, 1, 1))[0] for i in range(len(split.steps))}
                    step_labels.append(StepLabel(example_id=e.pk, annotator=u, rule=split.used, version=1,
                                                 entries=entries_from(split, verdicts, {0: "bench note"})))
            StepLabel.objects.bulk_create(step_labels, batch_size=batch)
        print(f"  seeded {min(start + batch, N_EXAMPLES):,} / {N_EXAMPLES:,}", flush=True)
    with connection.cursor() as cur:
        cur.execute("ANALYZE curation_example; ANALYZE curation_assignment; ANALYZE curation_label; ANALYZE curation_revision; ANALYZE curation_steplabel;")
    return {"project": project, "users": users, "seeded_s": time.perf_counter() - started}


def time_pages(client, urls: list[str], expect: int = 200) -> dict:
    for url in urls[:WARMUP]:
        client.get(url)
    times = []
    for url in urls:
        t0 = time.perf_counter()
        resp = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != expect:
            raise RuntimeError(f"{url}: HTTP {resp.status_code}")
    return {"n": len(times), "median_ms": round(statistics.median(times), 1), "p95_ms": round(pct(times, 0.95), 1), "max_ms": round(max(times), 1)}


def bench_import(users: dict, vocab: list[str]) -> dict:
    from r1lab.curation.services.import_jobs import import_job_check, import_job_create, import_job_run
    from r1lab.curation.services.projects import project_create
    from r1lab.curation.models import CurationProject, ImportJob

    CurationProject.objects.filter(slug="bench-import").delete()
    project = project_create(name="Benchmark import", slug="bench-import", user=users["bench-reviewer"])
    project.annotators.set([users["bench-annotator"]])
    rng = random.Random(5)
    weights = zipf_cum_weights(len(vocab))
    lines = []
    for i in range(N_IMPORT):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        lines.append(json.dumps({
            "prompt": f"What is {a} + {b}? " + make_text(rng, vocab, weights, 10),
            "reasoning": make_text(rng, vocab, weights, 120) + (" Wait, let me check." if i % 3 == 0 else ""),
            "summary": f"\\boxed{{{a + b if i % 5 else a + b + 1}}}", "gold_answer": str(a + b), "tags": ["bench"],
        }))
    data = ("\n".join(lines) + "\n").encode()
    t0 = time.perf_counter()
    job = import_job_create(project=project, user=users["bench-reviewer"], filename="bench.jsonl", data=data)
    if job.status == ImportJob.Status.CHECKING:  # a large file: the check import_job_check_task runs, minus Celery
        job = import_job_check(job_id=job.pk)
    t_parse = time.perf_counter() - t0
    assert job.status == ImportJob.Status.READY, job.errors[:3]
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING)  # what import_job_start does, minus Celery
    t1 = time.perf_counter()
    job = import_job_run(job_id=job.pk)
    t_run = time.perf_counter() - t1
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    total = t_parse + t_run
    result = {
        "rows": N_IMPORT, "bytes": len(data), "parse_validate_s": round(t_parse, 2), "checks_and_write_s": round(t_run, 2),
        "total_s": round(total, 2), "rows_per_s": round(N_IMPORT / total),
    }
    project.delete()
    return result


def reasoning_text(rng: random.Random, vocab: list[str], weights: list[float], n_words: int) -> str:
    """Reasoning-like text: sentences of 8-20 Zipf words, a paragraph break every ~6 sentences."""
    out, n = [], 0
    while n < n_words:
        k = min(rng.randint(8, 20), n_words - n)
        out.append(make_text(rng, vocab, weights, k).capitalize() + ("." if rng.random() < 0.85 else ","))
        out.append("\n\n" if rng.random() < 0.16 else " ")
        n += k
    return "".join(out).rstrip()


def edited(rng: random.Random, vocab: list[str], weights: list[float], text: str) -> str:
    """An annotator's pass: 5% of the words replaced, three sentences added, one dropped."""
    words = text.split(" ")
    for _ in range(len(words) // 20):
        i = rng.randrange(len(words))
        words[i] = rng.choice(vocab)
    sentences = " ".join(words).split(". ")
    del sentences[rng.randrange(len(sentences))]
    for _ in range(3):
        sentences.insert(rng.randrange(len(sentences)), make_text(rng, vocab, weights, 12).capitalize())
    return ". ".join(sentences)


def bench_history() -> None:
    """The history page (open to viewers) on long revisions, and the unbounded difflib diff it replaced."""
    setup_django()
    import difflib

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from r1lab.curation import diff, forms
    from r1lab.curation.services.examples import example_create, example_save
    from r1lab.curation.services.projects import project_create
    from r1lab.curation.models import CurationProject

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    load_start = [round(x, 1) for x in os.getloadavg()]
    max_chars = forms.EditorForm.base_fields["reasoning"].max_length
    vocab, rng = vocabulary(), random.Random(15)
    weights = zipf_cum_weights(len(vocab))
    author, _ = get_user_model().objects.get_or_create(username="bench-history-author")
    viewer, _ = get_user_model().objects.get_or_create(username="bench-history-viewer")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    CurationProject.objects.filter(slug="bench-history").delete()
    project = project_create(name="Benchmark history", slug="bench-history", user=author)

    def max_words(seed: int) -> str:  # as many words as fit the field
        text = reasoning_text(random.Random(seed), vocab, weights, max_chars // 5)
        return text[:max_chars].rsplit(" ", 1)[0]

    six = reasoning_text(rng, vocab, weights, 6000)
    big = max_words(16)
    cases = {
        "6,000 words, edited (5% of words, +3/-1 sentences)": (six, edited(rng, vocab, weights, six)),
        "6,000 words, rewritten": (six, reasoning_text(rng, vocab, weights, 6000)),
        f"field maximum ({max_chars:,} chars), edited": (big, edited(rng, vocab, weights, big)[:max_chars]),
        f"field maximum ({max_chars:,} chars), rewritten": (big, max_words(17)),
        "field maximum, one popular token ('a b …' → 'a c …')": ("a b " * (max_chars // 4), "a c " * (max_chars // 4)),
    }
    client = Client()
    client.force_login(viewer)
    rows = {}
    for name, (old, new) in cases.items():
        ex = example_create(project=project, prompt="Long one?", reasoning=old, summary="4", source="manual", user=author)
        example_save(example=ex, user=author, based_on=1, changes={"reasoning": new})
        url = f"/curation/e/{ex.pk}/history/?a=1&b=2"
        for _ in range(2):
            client.get(url)
        wall, cpu = [], []
        for _ in range(REQUESTS_HISTORY):
            t0, c0 = time.perf_counter(), time.process_time()
            resp = client.get(url)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert resp.status_code == 200
        d = diff.text_diff(old, new)
        rows[name] = {"chars": [len(old), len(new)], "words": [len(old.split()), len(new.split())], "level": d.level, "work": d.work,
                      **diff.diff_stats(d.segments), "n": len(wall), "median_ms": round(statistics.median(wall), 1),
                      "p95_ms": round(pct(wall, 0.95), 1), "max_ms": round(max(wall), 1), "cpu_median_ms": round(statistics.median(cpu), 1)}
    print(f"history page, {REQUESTS_HISTORY} requests each after 2 warm-ups (in-process test Client; load at start {load_start})")
    print("\n| revisions compared | diff level | median ms | p95 ms | max ms | CPU median ms |\n|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['level']} | {r['median_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['cpu_median_ms']} |")

    # Before: difflib.SequenceMatcher over the same word tokens (the old word_diff), one run each.
    before = {}
    for n_words in (1000, 2000, 4000, 6000):
        old = reasoning_text(random.Random(n_words), vocab, weights, n_words)
        new = edited(random.Random(n_words + 1), vocab, weights, old)
        a, b = diff.tokens(old), diff.tokens(new)
        t0 = time.perf_counter()
        difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
        before[n_words] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        diff.text_diff(old, new)
        print(f"{n_words:,}-word edit: difflib word diff (before) {before[n_words]} s, bounded diff {time.perf_counter() - t0:.3f} s", flush=True)
    out = {
        "benchmark": "curation history page (bounded diff, issue 15)", "requests_per_case": REQUESTS_HISTORY,
        "measure": "in-process Django test Client, perf_counter (wall) and process_time (CPU) per request, after 2 warm-ups",
        "history_page": rows, "before_difflib_word_diff_s_per_field": before,
        "bounds": {"WORD_DIFF_MAX_TOKENS": diff.WORD_DIFF_MAX_TOKENS, "WORK_BUDGET": diff.WORK_BUDGET},
        "env": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                "load_average_1_5_15_at_start": load_start, "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
                "db": connection.vendor, "note": "shared 2-core machine, other engineers' jobs running"},
        "command": f"BENCH_CURATION_ONLY=history DATABASE_URL=postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']} "
                   ".venv/bin/python benchmarks/curation.py",
    }
    project.delete()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "curation_history.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'curation_history.json'}")


def main() -> None:
    if os.environ.get("BENCH_CURATION_ONLY") == "history":
        bench_history()
        return
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # lets the test Client run against this (non-test) database
    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    vocab = vocabulary()
    print(f"curation benchmark: {N_EXAMPLES:,} examples in {connection.settings_dict['NAME']} (PostgreSQL {connection.cursor().connection.info.server_version})")
    load_start = [round(x, 1) for x in os.getloadavg()]
    data = ensure_data(vocab)
    project, users = data["project"], data["users"]
    from r1lab.curation.services.queue_counts import queue_counts_recompute

    # The seeding above bypasses the services (bulk rows), so rebuild the queue counters once; on a
    # database seeded by an older checkout this also checks them (fixed = counters that were off).
    t0 = time.perf_counter()
    recount = queue_counts_recompute(project=project)
    recount_s = time.perf_counter() - t0
    print(f"queue counters: {recount.counters} for the project, {len(recount.fixed)} rebuilt, in {recount_s:.2f} s")
    from r1lab.curation.models import Assignment, Example

    rng = random.Random(3)
    annotator = users["bench-annotator"]
    client = Client()
    client.force_login(annotator)
    from r1lab.curation.models import StepLabel

    assigned = list(Assignment.objects.filter(user=annotator, project=project).values_list("example_id", flat=True)[:50_000])
    # Examples with this annotator's step verdicts (every example past draft): the editor with step labels present.
    with_steps = list(StepLabel.objects.filter(annotator=annotator, example__project=project).values_list("example_id", flat=True)[:50_000])
    pages = {
        # Calibration: a page with no curation work at all, to read the others against the machine's load.
        "baseline: /healthz (no curation queries)": ["/healthz"] * REQUESTS,
        "queue page (/curation/queue/)": ["/curation/queue/"] * REQUESTS,
        "editor page (/curation/e/<id>/)": [f"/curation/e/{rng.choice(with_steps)}/" for _ in range(REQUESTS)],
    }
    rows = {}
    for name, urls in pages.items():
        rows[name] = time_pages(client, urls)
    next_url = f"/curation/queue/{project.slug}/next/"
    rows["queue next (redirect to the next example)"] = time_pages(client, [next_url] * REQUESTS, expect=302)

    reviewer = Client()
    reviewer.force_login(users["bench-reviewer"])
    ranks = [0, 5, 50, 500, 3000, 4900]
    queries = []
    for i in range(REQUESTS):
        r = ranks[i % len(ranks)]
        q = vocab[r] if i % 4 else f"{vocab[r]} {vocab[(r * 7 + 13) % len(vocab)]}"
        extra = "&status=submitted" if i % 3 == 0 else ""
        queries.append(f"/curation/p/{project.slug}/examples/?q={q}{extra}")
    rows["full-text search (examples page)"] = time_pages(reviewer, queries)
    rows["examples page, filters only (status+language+length)"] = time_pages(
        reviewer, [f"/curation/p/{project.slug}/examples/?status=approved&language=zh&min_length={200 + i}" for i in range(REQUESTS)])
    rows["review queue page"] = time_pages(reviewer, ["/curation/review/"] * REQUESTS)
    rows["editor page, reviewer (every annotator's step labels)"] = time_pages(
        reviewer, [f"/curation/e/{rng.choice(with_steps)}/" for _ in range(REQUESTS)])
    # The agreement page reads every label and step verdict of the project (not a page with a goal).
    agreement_url = f"/curation/p/{project.slug}/agreement/"
    rows["agreement page (labels, step labels, edits)"] = time_pages(reviewer, [agreement_url] * REQUESTS_AGREEMENT)

    print("\n| page | n | median ms | p95 ms | max ms | goal p95 |\n|---|---|---|---|---|---|")
    goals = {"queue page (/curation/queue/)": 100, "editor page (/curation/e/<id>/)": 100, "full-text search (examples page)": 200,
             "editor page, reviewer (every annotator's step labels)": 100}
    for name, r in rows.items():
        goal = goals.get(name)
        print(f"| {name} | {r['n']} | {r['median_ms']} | {r['p95_ms']} | {r['max_ms']} | {f'≤ {goal}' if goal else '–'} |")
    imp = bench_import(users, vocab)
    print(f"\nimport of {imp['rows']:,} JSONL rows ({imp['bytes'] / 1e6:.1f} MB): parse+validate {imp['parse_validate_s']} s, "
          f"checks+write {imp['checks_and_write_s']} s, total {imp['total_s']} s = {imp['rows_per_s']:,} rows/s")
    out = {
        "benchmark": "curation", "examples": Example.objects.filter(project=project).count(), "requests_per_page": REQUESTS,
        "measure": "in-process Django test Client, perf_counter per request (server time; no network), after warm-up",
        "pages": rows, "goals_p95_ms": goals,
        "meets_goals": {name: rows[name]["p95_ms"] <= goal for name, goal in goals.items()},
        "import": imp, "seeded_s": data["seeded_s"],
        "queue_counters": {"counters": recount.counters, "rebuilt_at_start": len(recount.fixed), "recount_s": round(recount_s, 2)},
        "env": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                "load_average_1_5_15_at_start": load_start,
                "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
                "db": connection.vendor, "note": "shared 2-core machine, other engineers' jobs running"},
        "command": f"DATABASE_URL=postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']} .venv/bin/python benchmarks/curation.py",
    }
    reference = os.environ.get("BENCH_CURATION_REFERENCE", "")
    if reference:
        ref = json.loads(Path(reference).read_text())
        out["reference"] = {"what": os.environ.get("BENCH_CURATION_REFERENCE_LABEL", reference), "pages": ref.get("pages"),
                            "import": ref.get("import"), "env": ref.get("env")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "curation.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'curation.json'}")


if __name__ == "__main__":
    main()
