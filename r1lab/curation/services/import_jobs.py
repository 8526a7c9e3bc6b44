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

from r1lab import dataset_formats
from r1lab.curation import formats, interchange
from r1lab.curation.checks import compute_checks_batch
from r1lab.curation.models import TEXT_FIELDS, CurationProject, Example, ImportJob, Revision
from r1lab.curation.services.bulk import BULK_BATCH, rows_insert
from r1lab.curation.services.import_extras import import_extras_write
from r1lab.curation.services.errors import TransitionError
from r1lab.curation.services.projects import assignments_fill

log = logging.getLogger(__name__)


def _imports_dir() -> Path:
    path = Path(settings.R1LAB_DATA_DIR) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _job_fields(result: formats.Parsed) -> dict:
    """The job's status, errors, preview and mapping from one parse of its file."""
    extra = result.error_count - len(result.errors)
    return {
        "status": ImportJob.Status.READY if result.ok else ImportJob.Status.INVALID,
        "total_rows": result.num_rows,
        "errors": result.errors + ([{"line": None, "message": f"… and {extra} more"}] if extra > 0 else []),
        "preview": [r.preview() for r in result.rows[:10]],
        "message": f"Ignored column(s): {', '.join(result.ignored_columns)}." if result.ignored_columns else "",
        "mapping": result.mapping.to_dict() if result.mapping else {},
        "file_info": result.file_info() if result.mapping else {},
    }


def import_job_create(*, project: CurationProject, user, filename: str, data: bytes,
                      mapping: formats.Mapping | None = None) -> ImportJob:
    """Parse and validate the whole file (nothing imported): the job holds preview and errors.

    The format and column mapping are detected unless given; the file is kept (also when it has
    errors) so that `import_job_remap` can read it again with the user's mapping. A file larger
    than R1LAB_IMPORT_BACKGROUND_BYTES is checked by a Celery task (`import_job_check`), with
    progress on the page; a smaller one here and now."""
    # A .zip of a version this lab exported (HF folder, Argilla records) brings its revisions and
    # labels (interchange.py); any other file is read through dataset_formats.
    file_format = interchange.export_format(filename, data) or formats.format_from_filename(filename)
    if file_format is None:
        raise ValidationError(f"Upload {dataset_formats.ACCEPTED} file (or a .zip of a dataset version exported from r1lab).")
    path = _imports_dir() / f"{uuid.uuid4().hex}.{file_format}"
    path.write_bytes(data)
    job = ImportJob(project=project, created_by=user, filename=filename[:255], file_format=file_format, path=str(path),
                    mapping=mapping.to_dict() if mapping else {})
    if len(data) > settings.R1LAB_IMPORT_BACKGROUND_BYTES:
        job.status, job.phase = ImportJob.Status.CHECKING, "queued"
        job.save()
        _check_later(job)
        return job
    for name, value in _job_fields(_parse(data, file_format=file_format, mapping=mapping)).items():
        setattr(job, name, value)
    job.save()
    return job


def _parse(data: bytes, *, file_format: str, mapping: formats.Mapping | None = None, on_progress=None) -> formats.Parsed:
    """Every row of an upload: an exported version through interchange.py (its columns are fixed:
    no mapping), anything else through formats.py with the mapping."""
    if file_format in interchange.FORMATS:
        return interchange.parse_file(data, file_format=file_format)
    return formats.parse_file(data, file_format=file_format, mapping=mapping, on_progress=on_progress)


def _check_later(job: ImportJob) -> None:
    from r1lab.curation.tasks import import_job_check_task

    transaction.on_commit(lambda: import_job_check_task.delay(job.pk))


def import_job_check(*, job_id: int) -> ImportJob:
    """The background check of a large file (Celery): read every row with the job's mapping
    (detected when it has none), progress saved as it goes; then ready or invalid, as a small
    file is at once."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status != ImportJob.Status.CHECKING:
        return job
    try:
        data = Path(job.path).read_bytes()
    except OSError as exc:
        _progress(job.pk, status=ImportJob.Status.FAILED, message=f"The uploaded file is gone: {exc}", finished_at=timezone.now())
        return ImportJob.objects.get(pk=job.pk)
    _progress(job.pk, phase="checking the file", done_rows=0, total_rows=0)
    result = _parse(data, file_format=job.file_format, mapping=formats.Mapping.from_dict(job.mapping),
                    on_progress=lambda done, total: _progress(job.pk, done_rows=done, total_rows=total or 0))
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.CHECKING).update(phase="", done_rows=0, **_job_fields(result))
    return ImportJob.objects.get(pk=job.pk)


def import_job_remap(*, job: ImportJob, mapping: formats.Mapping) -> ImportJob:
    """Read the job's file again with `mapping` (the user's edit of the detected one): new preview
    and errors (for a large file: checked again in the background). Only before the import
    starts; nothing is imported."""
    if job.file_format in interchange.FORMATS:
        raise ValidationError("An exported dataset version has fixed columns: there is no mapping to change.")
    waiting = [ImportJob.Status.READY, ImportJob.Status.INVALID]
    if job.status not in waiting:
        raise TransitionError("This import has started already (or is being checked): its mapping cannot change now.")
    path = Path(job.path)
    if not path.is_file():
        raise TransitionError("The uploaded file is gone: upload it again.")
    if path.stat().st_size > settings.R1LAB_IMPORT_BACKGROUND_BYTES:
        fields = {"status": ImportJob.Status.CHECKING, "phase": "queued", "mapping": mapping.to_dict(), "errors": [], "preview": []}
    else:
        fields = _job_fields(_parse(path.read_bytes(), file_format=job.file_format, mapping=mapping))
    updated = ImportJob.objects.filter(pk=job.pk, status__in=waiting).update(**fields)
    if not updated:  # confirmed in another tab meanwhile
        raise TransitionError("This import has started already: its mapping can no longer change.")
    job.refresh_from_db()
    if job.status == ImportJob.Status.CHECKING:
        _check_later(job)
    return job


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
    _progress(job.pk, phase="reading the file")
    result = _parse(data, file_format=job.file_format, mapping=formats.Mapping.from_dict(job.mapping),
                    on_progress=lambda done, total: _progress(job.pk, phase=f"reading the file: row {done:,}"))
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
    """Inside the import's transaction: what an exported version kept besides the text (revisions,
    labels, step labels: import_extras), the assignments, then the job marked done (at commit)."""
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

