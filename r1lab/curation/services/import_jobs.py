"""File imports: `import_job_create` validates the whole file (nothing imported; the job holds
the preview and the errors), `import_job_start` queues it, `import_job_run` (the Celery task)
checks every row and writes all of them in one transaction."""
from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone

from r1lab.curation import interchange
from r1lab.curation.checks import compute_checks_batch
from r1lab.curation.models import TEXT_FIELDS, CurationProject, Example, ImportJob, Revision
from r1lab.curation.services.bulk import BULK_BATCH, rows_insert
from r1lab.curation.services.errors import TransitionError
from r1lab.curation.services.import_extras import import_extras_write
from r1lab.curation.services.projects import assignments_fill

log = logging.getLogger(__name__)


def _imports_dir() -> Path:
    path = Path(settings.R1LAB_DATA_DIR) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def import_job_create(*, project: CurationProject, user, filename: str, data: bytes) -> ImportJob:
    """Parse and validate the whole file now (nothing imported): the job holds preview and errors."""
    file_format = interchange.format_of(filename, data)
    if file_format is None:
        raise ValidationError("Upload a .jsonl or .csv file (or a .zip of an exported dataset version).")
    result = interchange.parse_file(data, file_format=file_format)
    path = _imports_dir() / f"{uuid.uuid4().hex}.{file_format}"
    if result.ok:
        path.write_bytes(data)
    message = ""
    if result.ignored_columns:
        message = f"Ignored column(s): {', '.join(result.ignored_columns)}."
    return ImportJob.objects.create(
        project=project, created_by=user, filename=filename[:255], file_format=file_format, path=str(path) if result.ok else "",
        status=ImportJob.Status.READY if result.ok else ImportJob.Status.INVALID,
        total_rows=len(result.rows) + result.error_count,
        errors=result.errors + ([{"line": None, "message": f"… and {result.error_count - len(result.errors)} more"}]
                                if result.error_count > len(result.errors) else []),
        preview=[r.preview() for r in result.rows[:10]], message=message,
    )


def import_job_start(*, job: ImportJob) -> ImportJob:
    """Queue the import (Celery, queue `default`) once the job is marked running."""
    from r1lab.curation.tasks import import_job_run_task

    updated = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.READY).update(status=ImportJob.Status.RUNNING, phase="queued")
    if not updated:
        raise TransitionError("This import is not waiting for confirmation (already started, finished or invalid).")
    transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
    job.refresh_from_db()
    return job


def _progress(job_id: int, **fields) -> None:
    # Outside the import's transaction (called before it opens), so the page sees it at once.
    ImportJob.objects.filter(pk=job_id).update(**fields)


def import_job_run(*, job_id: int, progress_every: int = 1000) -> ImportJob:
    """Check every row (progress saved as it goes), then write all of them in one transaction."""
    job = ImportJob.objects.select_related("project", "created_by").get(pk=job_id)
    if job.status != ImportJob.Status.RUNNING:
        return job
    project, user = job.project, job.created_by
    try:
        data = Path(job.path).read_bytes()
    except OSError as exc:
        _progress(job.pk, status=ImportJob.Status.FAILED, message=f"The uploaded file is gone: {exc}", finished_at=timezone.now())
        return ImportJob.objects.get(pk=job.pk)
    result = interchange.parse_file(data, file_format=job.file_format)
    if not result.ok:  # the file changed on disk under us; say so and import nothing
        _progress(job.pk, status=ImportJob.Status.FAILED, errors=result.errors, message="The file no longer validates.", finished_at=timezone.now())
        return ImportJob.objects.get(pk=job.pk)
    rows = result.rows
    values = [
        {"prompt": r.prompt, "reasoning": r.reasoning, "summary": r.summary, "gold_answer": r.gold_answer, "language": r.language}
        for r in rows
    ]
    windows = [(start, min(start + progress_every, len(rows))) for start in range(0, len(rows), progress_every)]
    if connection.vendor == "postgresql":
        # Checks and writes overlap: a thread computes the checks batch by batch (reporting progress
        # on its own connection, so the page sees it at once) while this thread streams the checked
        # rows into the COPY and PostgreSQL indexes them. Nothing is visible until the commit.
        _progress(job.pk, phase="checking and writing", done_rows=0, total_rows=len(rows))
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-{job.pk}-checks")
        try:
            futures = [pool.submit(_import_check_window, job.pk, values, lo, hi, len(rows)) for lo, hi in windows]
            with transaction.atomic():
                example_ids = _import_write(job=job, project=project, user=user, rows=rows, values=values,
                                            checks=_results_in_order(futures))
                assigned = _import_finish(job=job, project=project, example_ids=example_ids, rows=rows, user=user)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:  # SQLite: one writer at a time, so the checks come first (progress saved as they go)
        _progress(job.pk, phase="checking", done_rows=0, total_rows=len(rows))
        checked = [_import_check_window(job.pk, values, lo, hi, len(rows), own_connection=False) for lo, hi in windows]
        with transaction.atomic():
            example_ids = _import_write(job=job, project=project, user=user, rows=rows, values=values,
                                        checks=(c for batch in checked for c in batch))
            assigned = _import_finish(job=job, project=project, example_ids=example_ids, rows=rows, user=user)
    log.info("import %s: %d examples, %d assignments", job.pk, len(example_ids), assigned)
    try:
        os.unlink(job.path)
    except OSError:
        pass
    return ImportJob.objects.get(pk=job.pk)


def _import_check_window(job_id: int, values: list[dict], lo: int, hi: int, total: int, *, own_connection: bool = True) -> list[dict]:
    """Checks of rows lo..hi (the rewards' batch forms), then the progress: rows checked so far."""
    try:
        checks = [c.as_fields() for c in compute_checks_batch(values[lo:hi])]
        _progress(job_id, done_rows=hi, **({"phase": "writing"} if hi == total else {}))
        return checks
    finally:
        if own_connection:  # a worker thread's connection: closed, not left to the thread's end
            connections.close_all()


def _results_in_order(futures: list[Future]) -> Iterator[dict]:
    for future in futures:
        yield from future.result()  # re-raises a failed batch here, inside the import's transaction


def _import_finish(*, job: ImportJob, project: CurationProject, example_ids: list[int], rows: list, user) -> int:
    """Inside the import's transaction: what the format kept besides the text (revisions, labels; issue
    18), the assignments, then the job marked done (at commit)."""
    kept = import_extras_write(project=project, rows=rows, example_ids=example_ids, user=user)
    assigned = assignments_fill(project=project, example_ids=example_ids)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.SUCCEEDED, phase="", finished_at=timezone.now(), done_rows=len(example_ids),
        message=(job.message + " " if job.message else "") + f"Imported {len(example_ids)} examples; {assigned} assignments made."
        + (f" {kept}" if kept else ""),
    )
    return assigned


def _import_write(*, job: ImportJob, project: CurationProject, user, rows: list, values: list[dict], checks: Iterable[dict]) -> list[int]:
    """Write the examples and their first revisions (inside the caller's transaction); their ids.

    PostgreSQL: ids are taken from the table's sequence up front, the examples go in with one COPY
    and the revisions with one INSERT … SELECT from them (the text is not sent twice). Elsewhere
    (SQLite): bulk_create.
    """
    now = timezone.now()
    user_id = user.pk if user is not None else None
    note = f"imported from {job.filename} line "
    if connection.vendor != "postgresql":
        checks = list(checks)
        created = Example.objects.bulk_create(
            [Example(project=project, source=row.source, source_ref=row.source_ref, tags=row.tags, updated_by=user, **v, **c)
             for row, v, c in zip(rows, values, checks)],
            batch_size=BULK_BATCH,
        )
        Revision.objects.bulk_create(
            [Revision(example_id=ex.pk, number=1, author=user, note=f"{note}{row.line}"[:200], changed_fields=list(TEXT_FIELDS), **v)
             for ex, row, v in zip(created, rows, values)],
            batch_size=BULK_BATCH,
        )
        return [ex.pk for ex in created]
    qn = connection.ops.quote_name
    examples, revisions = qn(Example._meta.db_table), qn(Revision._meta.db_table)
    with connection.cursor() as cur:
        cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [Example._meta.db_table, len(rows)])
        ids = [r[0] for r in cur.fetchall()]
    columns = ["id", "project_id", "prompt", "reasoning", "summary", "gold_answer", "language", "source", "source_ref", "tags",
               "status", "version", "format_score", "accuracy", "language_score", "length", "reflection_count", "review_comment",
               "created_at", "updated_at", "updated_by_id"]
    rows_insert(model=Example, columns=columns, rows=(  # a generator: each row is sent as soon as its checks are in
        (ex_id, project.pk, v["prompt"], v["reasoning"], v["summary"], v["gold_answer"], v["language"], row.source,
         None if row.source_ref is None else json.dumps(row.source_ref), json.dumps(row.tags), Example.Status.DRAFT, 1,
         c["format_score"], c["accuracy"], c["language_score"], c["length"], c["reflection_count"], "", now, now, user_id)
        for ex_id, row, v, c in zip(ids, rows, values, checks, strict=True)
    ))
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {revisions} (example_id, number, author_id, created_at, note, changed_fields, prompt, reasoning, summary, gold_answer, language) "
            f"SELECT e.id, 1, %s, %s, left(%s || t.line::text, 200), %s::jsonb, e.prompt, e.reasoning, e.summary, e.gold_answer, e.language "
            f"FROM unnest(%s::bigint[], %s::int[]) AS t(id, line) JOIN {examples} e ON e.id = t.id",
            [user_id, now, note, json.dumps(list(TEXT_FIELDS)), ids, [row.line for row in rows]],
        )
    return ids


def import_job_fail(*, job_id: int, message: str) -> None:
    _progress(job_id, status=ImportJob.Status.FAILED, message=message[:2000], finished_at=timezone.now())

