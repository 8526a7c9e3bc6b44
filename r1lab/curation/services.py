"""Curation writes. Every change to an example's text is `example_save` (a conditional UPDATE on
`version` plus a Revision); status changes go through `example_submit` / `example_review`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, connections, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.text import slugify

from r1lab.accounts.permissions import can
from r1lab.curation import formats, labels, selectors
from r1lab.curation.checks import compute_checks, compute_checks_batch
from r1lab.curation.models import (
    TEXT_FIELDS,
    Assignment,
    CurationProject,
    DatasetVersion,
    DatasetVersionItem,
    DatasetVersionUse,
    Example,
    ImportJob,
    Label,
    QueueCount,
    Revision,
    StatusEvent,
    assemble_completion,
    default_label_schema,
)

log = logging.getLogger(__name__)

BULK_BATCH = 2000


class EditConflict(Exception):
    """The example changed since the version the editor was based on; nothing was written."""

    def __init__(self, *, example: Example, based_on: int, mine: dict):
        super().__init__(f"example {example.pk} is at version {example.version}, the save was based on {based_on}")
        self.example = example
        self.based_on = based_on
        self.mine = mine


class TransitionError(ValidationError):
    pass


class FourEyesError(ValidationError):
    """The reviewer wrote or last edited the example (or spot-checked the set they freeze)."""


# --- queue counters ----------------------------------------------------------------------------
def _queue_count_add(deltas: dict[tuple[int, int], tuple[int, int]]) -> None:
    """Add (done, remaining) to the QueueCount of each (project_id, user_id), creating missing rows.

    Called in the same transaction as the assignment change it mirrors (after it, so that every
    writer takes the assignment rows' locks before the counters'), in key order (no deadlocks).
    One upsert per key: `INSERT … ON CONFLICT DO UPDATE` (PostgreSQL and SQLite alike).
    """
    rows = [(p, u, d, r) for (p, u), (d, r) in sorted(deltas.items()) if d or r]
    if not rows:
        return
    table = connection.ops.quote_name(QueueCount._meta.db_table)
    with connection.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (project_id, user_id, done, remaining) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (user_id, project_id) DO UPDATE SET done = {table}.done + excluded.done, "
            f"remaining = {table}.remaining + excluded.remaining",
            rows,
        )


@dataclass(frozen=True)
class RecountResult:
    counters: int  # counters after the recount
    fixed: list[dict]  # [{"project_id", "user_id", "was": (done, remaining), "now": (done, remaining)}]


def queue_counts_recompute(*, project: CurationProject | None = None) -> RecountResult:
    """Rebuild the QueueCount rows (of `project`, else all) from the assignments; says what drifted.

    On PostgreSQL the assignments table is locked in SHARE mode for the few hundred ms this takes:
    assignment writers wait, so no change lands between the count and the rewrite.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {connection.ops.quote_name(Assignment._meta.db_table)} IN SHARE MODE")
        assignments = Assignment.objects.all() if project is None else Assignment.objects.filter(project=project)
        fresh = {
            (r["project_id"], r["user_id"]): (r["n_done"], r["n_remaining"])
            for r in assignments.values("project_id", "user_id").order_by()
            .annotate(n_done=Count("id", filter=Q(done=True)), n_remaining=Count("id", filter=Q(done=False)))
        }
        counters = QueueCount.objects.all() if project is None else QueueCount.objects.filter(project=project)
        before = {(c.project_id, c.user_id): (c.done, c.remaining) for c in counters.select_for_update()}
        fixed = [
            {"project_id": key[0], "user_id": key[1], "was": before.get(key, (0, 0)), "now": fresh.get(key, (0, 0))}
            for key in sorted(set(before) | set(fresh)) if before.get(key, (0, 0)) != fresh.get(key, (0, 0))
        ]
        counters.delete()
        QueueCount.objects.bulk_create(
            [QueueCount(project_id=p, user_id=u, done=d, remaining=r) for (p, u), (d, r) in sorted(fresh.items())],
            batch_size=BULK_BATCH,
        )
    return RecountResult(counters=len(fresh), fixed=fixed)


# --- projects and assignment -----------------------------------------------------------------
def project_create(
    *, name: str, user, description: str = "", target_language: str = "en", overlap: int = 1,
    label_schema: list[dict] | None = None, slug: str = "", rs_one_person_freeze: bool = False,
) -> CurationProject:
    schema = labels.schema_validate(label_schema if label_schema is not None else default_label_schema())
    if overlap < 1:
        raise ValidationError("Overlap must be at least 1.")
    slug = slugify(slug or name)[:80] or f"project-{uuid.uuid4().hex[:8]}"
    if CurationProject.objects.filter(Q(slug=slug) | Q(name=name)).exists():
        raise ValidationError(f"A project named {name!r} (or with slug {slug!r}) exists already.")
    return CurationProject.objects.create(
        name=name, slug=slug, description=description, target_language=target_language, overlap=overlap,
        label_schema=schema, created_by=user, rs_one_person_freeze=rs_one_person_freeze,
    )


def project_update(
    *, project: CurationProject, description: str, target_language: str, overlap: int, label_schema,
    rs_one_person_freeze: bool | None = None,
) -> CurationProject:
    """`rs_one_person_freeze=None` leaves that setting as it is."""
    schema = labels.schema_validate(label_schema)
    if overlap < 1:
        raise ValidationError("Overlap must be at least 1.")
    project.description = description
    project.target_language = target_language
    project.overlap = overlap
    project.label_schema = schema
    fields = ["description", "target_language", "overlap", "label_schema"]
    if rs_one_person_freeze is not None:
        project.rs_one_person_freeze = rs_one_person_freeze
        fields.append("rs_one_person_freeze")
    project.save(update_fields=fields)
    return project


def project_set_annotators(*, project: CurationProject, users) -> int:
    """Set who annotates the project, then fill every example up to `overlap` assignments."""
    with transaction.atomic():
        project.annotators.set(users)
        return assignments_fill(project=project)


def assignments_fill(*, project: CurationProject, example_ids: list[int] | None = None) -> int:
    """Give each example (of `example_ids`, else all) up to `overlap` annotators, least loaded first.

    Never removes an assignment (work may be in progress); returns how many were created.
    """
    annotator_ids = list(project.annotators.order_by("id").values_list("id", flat=True))
    if not annotator_ids:
        return 0
    load = Counter({uid: 0 for uid in annotator_ids})
    load.update(
        dict(Assignment.objects.filter(project=project, done=False, user_id__in=annotator_ids)
             .values_list("user_id").annotate(n=Count("id")).values_list("user_id", "n"))
    )
    examples = Example.objects.filter(project=project).exclude(status=Example.Status.APPROVED)
    if example_ids is not None:
        examples = examples.filter(id__in=example_ids)
    examples = examples.annotate(n=Count("assignments")).filter(n__lt=project.overlap)
    existing: dict[int, set[int]] = {}
    candidates = list(examples.values_list("id", flat=True).order_by("id"))
    for start in range(0, len(candidates), 10_000):
        chunk = candidates[start:start + 10_000]
        for ex_id, uid in Assignment.objects.filter(example_id__in=chunk).values_list("example_id", "user_id"):
            existing.setdefault(ex_id, set()).add(uid)
    new = []
    order = {uid: i for i, uid in enumerate(annotator_ids)}
    for ex_id in candidates:
        have = existing.get(ex_id, set())
        need = project.overlap - len(have)
        for uid in sorted((u for u in annotator_ids if u not in have), key=lambda u: (load[u], order[u]))[:max(need, 0)]:
            new.append(Assignment(example_id=ex_id, user_id=uid, project=project))
            load[uid] += 1
    now = timezone.now()
    _insert_rows(Assignment, ["example_id", "user_id", "project_id", "done", "assigned_at"],
                 [(a.example_id, a.user_id, project.pk, False, now) for a in new])
    _queue_count_add({(project.pk, uid): (0, n) for uid, n in Counter(a.user_id for a in new).items()})
    return len(new)


def _insert_rows(model, columns: list[str], rows: Iterable[tuple]) -> None:
    """Insert plain rows into `model`'s table: COPY on PostgreSQL (psycopg 3), bulk_create elsewhere.

    `columns` are database column names; every NOT NULL column without a database default must be
    among them. Triggers (the search vector) and constraints apply as for INSERT. `rows` may be a
    generator: COPY streams them to the server as they come.
    """
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        with connection.cursor() as cur:
            with cur.cursor.copy(f"COPY {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    rows = list(rows)
    if not rows:
        return
    attnames = {f.column: f.attname for f in model._meta.concrete_fields}
    model.objects.bulk_create([model(**{attnames[c]: v for c, v in zip(columns, row)}) for row in rows], batch_size=BULK_BATCH)


# --- examples ----------------------------------------------------------------------------------
def _checked_fields(values: dict) -> dict:
    return compute_checks(
        reasoning=values["reasoning"], summary=values["summary"], gold_answer=values["gold_answer"], language=values["language"],
    ).as_fields()


def example_create(
    *, project: CurationProject, prompt: str, reasoning: str, summary: str, gold_answer: str = "",
    language: str = "en", source: str, source_ref: dict | None = None, user, tags: list[str] | None = None,
) -> Example:
    """A new draft example (revision 1), assigned to the project's annotators up to `overlap`.

    The rollout browser calls this to send a completion to curation (`source="rollout"`).
    """
    if source not in Example.Source.values:
        raise ValidationError(f"source must be one of {', '.join(Example.Source.values)}")
    if not prompt.strip():
        raise ValidationError("The prompt is empty.")
    values = {"prompt": prompt, "reasoning": reasoning, "summary": summary, "gold_answer": gold_answer, "language": language or "en"}
    with transaction.atomic():
        example = Example.objects.create(
            project=project, source=source, source_ref=source_ref, tags=list(tags or []), updated_by=user,
            **values, **_checked_fields(values),
        )
        Revision.objects.create(example=example, number=1, author=user, note=f"created ({source})", changed_fields=list(TEXT_FIELDS), **values)
        assignments_fill(project=project, example_ids=[example.pk])
    return example


def example_can_edit(*, user, example: Example) -> bool:
    if can(user, "curation.review"):
        return True
    if not can(user, "curation.annotate") or example.status in (Example.Status.APPROVED, Example.Status.SUBMITTED):
        return False
    assigned = getattr(example, "mine_assigned", None)  # annotated by selectors.editor_example for this user
    if assigned is not None and getattr(example, "mine_for_user_id", None) == user.pk:
        return assigned
    return Assignment.objects.filter(example=example, user=user).exists()


def example_save(*, example: Example, user, based_on: int, changes: dict, note: str = "save") -> Example:
    """Save text `changes` made on top of version `based_on`; a Revision records it.

    The write is `UPDATE … WHERE id = … AND version = based_on`: when someone saved in between,
    no row matches, nothing is written, and EditConflict carries the current example. A save
    that changes no text (relative to `based_on`) writes nothing and returns the current example.
    A text change to an approved example sends it back to review (four eyes: what goes into the
    next frozen version is what someone other than its last editor approved).
    """
    changes = {k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in changes.items() if k in TEXT_FIELDS}
    with transaction.atomic():
        base = Revision.objects.filter(example_id=example.pk, number=based_on).first()
        if base is None:
            current = Example.objects.get(pk=example.pk)
            raise EditConflict(example=current, based_on=based_on, mine=changes)
        changed = [k for k, v in changes.items() if getattr(base, k) != v]
        if not changed:
            # No text of mine to write, so nothing can be overwritten (labels never conflict).
            return Example.objects.get(pk=example.pk)
        values = {f: getattr(base, f) for f in TEXT_FIELDS} | {k: changes[k] for k in changed}
        if not values["prompt"].strip():
            raise ValidationError("The prompt may not be empty.")
        now = timezone.now()
        updated = Example.objects.filter(pk=example.pk, version=based_on).update(
            **values, **_checked_fields(values), version=F("version") + 1, updated_at=now, updated_by=user,
        )
        if updated == 0:
            current = Example.objects.get(pk=example.pk)
            raise EditConflict(example=current, based_on=based_on, mine=changes)
        Revision.objects.create(example_id=example.pk, number=based_on + 1, author=user, note=note[:200], changed_fields=changed, **values)
        # The row is locked by the UPDATE above: no review lands between it and this one.
        if Example.objects.filter(pk=example.pk, status=Example.Status.APPROVED).update(status=Example.Status.SUBMITTED):
            StatusEvent.objects.create(
                example_id=example.pk, user=user, from_status=Example.Status.APPROVED, to_status=Example.Status.SUBMITTED,
                comment=f"edited after approval (version {based_on + 1}): needs review again",
            )
        return Example.objects.get(pk=example.pk)


def revision_restore(*, example: Example, number: int, user, based_on: int) -> Example:
    """Make revision `number`'s text the current text, as a new revision (history is kept)."""
    revision = Revision.objects.get(example=example, number=number)
    return example_save(
        example=example, user=user, based_on=based_on, note=f"restored revision {number}",
        changes={f: getattr(revision, f) for f in TEXT_FIELDS},
    )


def label_save(*, example: Example, user, values: dict) -> Label:
    """Store `user`'s answers (raw form strings are cleaned against the project's label set)."""
    clean = labels.values_clean(example.project.label_schema, values)
    label, _ = Label.objects.update_or_create(example=example, annotator=user, defaults={"values": clean})
    return label


def _set_status(example: Example, *, to: str, user, comment: str = "", allowed_from: tuple[str, ...], extra: dict | None = None) -> Example:
    updated = Example.objects.filter(pk=example.pk, status__in=allowed_from).update(status=to, updated_at=timezone.now(), **(extra or {}))
    if not updated:
        current = Example.objects.get(pk=example.pk)
        raise TransitionError(f"Example {example.pk} is {current.status}; it cannot become {to} from there.")
    StatusEvent.objects.create(example=example, user=user, from_status=example.status, to_status=to, comment=comment)
    return Example.objects.get(pk=example.pk)


def example_submit(*, example: Example, user) -> Example:
    """`user` is done with the example. It becomes `submitted` once all its annotators are done."""
    with transaction.atomic():
        example = Example.objects.select_for_update().get(pk=example.pk)
        if example.status not in (Example.Status.DRAFT, Example.Status.REJECTED):
            raise TransitionError(f"Example {example.pk} is {example.status}; only drafts and rejected examples can be submitted.")
        flipped = Assignment.objects.filter(example=example, user=user, done=False).update(done=True, done_at=timezone.now())
        _queue_count_add({(example.project_id, user.pk): (flipped, -flipped)})
        if Assignment.objects.filter(example=example, done=False).exists():
            return example  # waiting for the other annotators (overlap > 1)
        return _set_status(example, to=Example.Status.SUBMITTED, user=user, allowed_from=(Example.Status.DRAFT, Example.Status.REJECTED))


def editor_save(
    *, example: Example, user, based_on: int, changes: dict, label_values: dict | None, submit: bool,
) -> Example:
    """The editor's one action: text (conditional), labels, and optionally submit. All or nothing."""
    if not example_can_edit(user=user, example=example):
        raise PermissionDenied("You may not edit this example.")
    with transaction.atomic():
        example = example_save(example=example, user=user, based_on=based_on, changes=changes, note="submit" if submit else "save")
        if label_values is not None:
            label_save(example=example, user=user, values=label_values)
        if submit:
            example = example_submit(example=example, user=user)
    return example


def example_review(*, example: Example, user, decision: str, comment: str = "", version: int | None = None) -> Example:
    """Approve, or reject with a comment (the example goes back to its annotators' queues).

    Four eyes: `user` may not approve an example they wrote or edited last (FourEyesError; they
    may reject it). `version`, when given, is the version the reviewer looked at: a decision on an
    example that changed since is refused (TransitionError), so nobody approves unseen text.
    """
    if not can(user, "curation.review"):
        raise PermissionDenied("Only reviewers approve or reject.")
    comment = comment.strip()
    with transaction.atomic():
        example = Example.objects.select_for_update().get(pk=example.pk)
        if version is not None and example.version != version:
            raise TransitionError(
                f"Example {example.pk} changed since you opened it (version {version}; it is now at version {example.version}): "
                "look at it again before deciding."
            )
        if decision == "approve":
            refusal = selectors.approval_refusal(example=example, user=user)
            if refusal:
                raise FourEyesError(refusal)
            return _set_status(
                example, to=Example.Status.APPROVED, user=user, comment=comment, allowed_from=(Example.Status.SUBMITTED,),
                extra={"reviewed_by": user, "reviewed_at": timezone.now(), "review_comment": comment},
            )
        if decision == "reject":
            if not comment:
                raise ValidationError("Say why you reject it: the comment goes back to the annotator.")
            example = _set_status(
                example, to=Example.Status.REJECTED, user=user, comment=comment, allowed_from=(Example.Status.SUBMITTED,),
                extra={"reviewed_by": user, "reviewed_at": timezone.now(), "review_comment": comment},
            )
            # Back to every annotator's queue: their done assignments become remaining again.
            # (The example row is locked by the status UPDATE above, so no submit runs in between.)
            was_done = list(Assignment.objects.filter(example=example, done=True).values_list("user_id", flat=True))
            Assignment.objects.filter(example=example, done=True).update(done=False, done_at=None)
            _queue_count_add({(example.project_id, uid): (-1, 1) for uid in was_done})
            return example
    raise ValidationError(f"Unknown decision {decision!r}.")


@dataclass(frozen=True)
class BulkApproval:
    approved: int
    own: int  # submitted examples of the selection that `user` wrote or edited last: left for another reviewer


def examples_bulk_approve(*, examples, user, comment: str = "") -> BulkApproval:
    """Approve every *submitted* example of `examples` (a filtered queryset) that `user` neither
    wrote nor edited last (four eyes: those are left submitted, and counted)."""
    if not can(user, "curation.review"):
        raise PermissionDenied("Only reviewers approve.")
    now = timezone.now()
    with transaction.atomic():
        ids = list(examples.filter(status=Example.Status.SUBMITTED).values_list("id", flat=True))
        approved = own = 0
        for start in range(0, len(ids), BULK_BATCH):
            chunk = ids[start:start + BULK_BATCH]
            # Conditional again: one that changed status meanwhile is not touched.
            locked = list(Example.objects.filter(id__in=chunk, status=Example.Status.SUBMITTED).select_for_update().values_list("id", flat=True))
            mine = selectors.own_example_ids(ids=locked, user=user)  # read after the lock: no edit in between
            own += len(mine)
            locked = [i for i in locked if i not in mine]
            Example.objects.filter(id__in=locked).update(
                status=Example.Status.APPROVED, reviewed_by=user, reviewed_at=now, review_comment=comment, updated_at=now,
            )
            StatusEvent.objects.bulk_create([
                StatusEvent(example_id=i, user=user, from_status=Example.Status.SUBMITTED, to_status=Example.Status.APPROVED, comment=comment or "bulk approve")
                for i in locked
            ])
            approved += len(locked)
    return BulkApproval(approved=approved, own=own)


# --- imports -------------------------------------------------------------------------------------
def _imports_dir() -> Path:
    path = Path(settings.R1LAB_DATA_DIR) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def import_job_create(*, project: CurationProject, user, filename: str, data: bytes) -> ImportJob:
    """Parse and validate the whole file now (nothing imported): the job holds preview and errors."""
    file_format = formats.format_from_filename(filename)
    if file_format is None:
        raise ValidationError("Upload a .jsonl or .csv file.")
    result = formats.parse_file(data, file_format=file_format)
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
    result = formats.parse_file(data, file_format=job.file_format)
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
                assigned = _import_finish(job=job, project=project, example_ids=example_ids)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:  # SQLite: one writer at a time, so the checks come first (progress saved as they go)
        _progress(job.pk, phase="checking", done_rows=0, total_rows=len(rows))
        checked = [_import_check_window(job.pk, values, lo, hi, len(rows), own_connection=False) for lo, hi in windows]
        with transaction.atomic():
            example_ids = _import_write(job=job, project=project, user=user, rows=rows, values=values,
                                        checks=(c for batch in checked for c in batch))
            assigned = _import_finish(job=job, project=project, example_ids=example_ids)
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


def _import_finish(*, job: ImportJob, project: CurationProject, example_ids: list[int]) -> int:
    """Inside the import's transaction: the assignments, then the job marked done (at commit)."""
    assigned = assignments_fill(project=project, example_ids=example_ids)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.SUCCEEDED, phase="", finished_at=timezone.now(), done_rows=len(example_ids),
        message=(job.message + " " if job.message else "") + f"Imported {len(example_ids)} examples; {assigned} assignments made.",
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
    _insert_rows(Example, columns, (  # a generator: each row is sent as soon as its checks are in
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


# --- dataset versions -------------------------------------------------------------------------
def _row_hash(*, prompt: str, completion: str, gold_answer: str, language: str) -> str:
    canonical = json.dumps([prompt, completion, gold_answer, language], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def content_hash(row_hashes: list[str]) -> str:
    """The version's hash: of its rows' hashes, sorted (the same content gives the same hash)."""
    digest = hashlib.sha256()
    for h in sorted(row_hashes):
        digest.update(h.encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class FreezeResult:
    version: DatasetVersion
    created: bool


def dataset_version_freeze(*, project: CurationProject, user, note: str = "") -> FreezeResult:
    """Freeze the project's approved examples into a new immutable version.

    When nothing changed since the latest version (same content hash), no version is made and
    the latest one is returned with created=False.
    """
    with transaction.atomic():
        # One freeze at a time per project: the version numbers and changelogs stay a chain.
        CurationProject.objects.select_for_update().get(pk=project.pk)
        rows = []
        for ex in Example.objects.filter(project=project, status=Example.Status.APPROVED).order_by("id").iterator(chunk_size=2000):
            completion = assemble_completion(ex.reasoning, ex.summary)
            rows.append(DatasetVersionItem(
                example_id=ex.pk, example_ref=ex.pk, prompt=ex.prompt, completion=completion, gold_answer=ex.gold_answer,
                language=ex.language, source=ex.source,
                row_hash=_row_hash(prompt=ex.prompt, completion=completion, gold_answer=ex.gold_answer, language=ex.language),
            ))
        if not rows:
            raise ValidationError("There are no approved examples to freeze.")
        digest = content_hash([r.row_hash for r in rows])
        previous = DatasetVersion.objects.filter(project=project).order_by("-number").first()
        if previous is not None and previous.content_hash == digest:
            return FreezeResult(version=previous, created=False)
        changelog = {"previous": None, "added": [r.example_ref for r in rows], "removed": [], "changed": []}
        if previous is not None:
            before = dict(previous.items.values_list("example_ref", "row_hash"))
            now = {r.example_ref: r.row_hash for r in rows}
            changelog = {
                "previous": previous.number,
                "added": sorted(set(now) - set(before)),
                "removed": sorted(set(before) - set(now)),
                "changed": sorted(k for k in set(now) & set(before) if now[k] != before[k]),
            }
        version = DatasetVersion.objects.create(
            project=project, number=(previous.number + 1 if previous else 1), content_hash=digest,
            example_count=len(rows), changelog=changelog, note=note[:300], created_by=user,
        )
        for r in rows:
            r.version = version
        DatasetVersionItem.objects.bulk_create(rows, batch_size=BULK_BATCH)
    return FreezeResult(version=version, created=True)


def dataset_version_export_path(*, version: DatasetVersion) -> Path:
    """The version as chat-format JSONL under R1LAB_DATA_DIR/datasets/, written once (atomically).

    The file name holds the content hash, so an existing file is the same content: it is reused.
    """
    directory = Path(settings.R1LAB_DATA_DIR) / "datasets"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{version.project.slug}-v{version.number}-{version.content_hash[:16]}.jsonl"
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for item in version.items.order_by("example_ref").iterator(chunk_size=2000):
            record = formats.export_record(
                item_id=item.example_ref, prompt=item.prompt, completion=item.completion,
                gold_answer=item.gold_answer, language=item.language, source=item.source,
            )
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


def dataset_version_record_use(*, version: DatasetVersion, consumer: str, checkpoint: str = "") -> DatasetVersionUse:
    """Lineage: the SFT stage records that it trained on `version` (and what it produced)."""
    return DatasetVersionUse.objects.create(version=version, consumer=consumer[:300], checkpoint=checkpoint[:500])
