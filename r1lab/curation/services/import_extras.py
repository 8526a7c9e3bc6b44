"""What an imported dataset version kept besides the text (issue 18): its revisions, labels and
step verdicts (interchange.InterchangeRow), written inside the import's transaction after the
examples (services.import_jobs).

- Revisions: the example's history replaces the single revision the import wrote: the file's
  revisions renumbered 1..n with their text, time and note; an author who is a user here stays
  the author, another one is named in the note. When the last one is not the imported text, one
  more revision ("imported") is added. The example's version is its last revision's number.
- Labels and step verdicts of users who exist here (same username) are kept; labels are cleaned
  against this project's label set (answers to questions it does not ask, or invalid for it, are
  left out). What was left out, and why, is in the import's message.
"""
from __future__ import annotations

import json
from collections import Counter

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from r1lab.curation import labels as label_rules
from r1lab.curation.interchange import REVISION_TEXT, InterchangeRow
from r1lab.curation.models import TEXT_FIELDS, CurationProject, Example, Label, Revision, StepLabel
from r1lab.curation.services.bulk import BULK_BATCH


def _insert_revisions(rows: list[tuple]) -> None:
    """Revision rows with their own created_at (the ORM would stamp auto_now_add over it)."""
    qn = connection.ops.quote_name
    jsonb = "::jsonb" if connection.vendor == "postgresql" else ""
    columns = ("example_id", "number", "author_id", "created_at", "note", "changed_fields", *REVISION_TEXT)
    with connection.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {qn(Revision._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
            f"VALUES (%s, %s, %s, %s, %s, %s{jsonb}, %s, %s, %s, %s, %s)",
            rows,
        )


def import_extras_write(*, project: CurationProject, rows: list, example_ids: list[int], user) -> str:
    """Write the kept revisions, labels and step verdicts of `rows` (the examples `example_ids`, just
    imported); returns what was kept and left out, for the import's message ("" when nothing)."""
    pairs = [(ex_id, row) for ex_id, row in zip(example_ids, rows, strict=True)
             if isinstance(row, InterchangeRow) and (row.revisions or row.labels or row.step_entries or row.unknown_users)]
    if not pairs:
        return ""
    names = {r["author"] for _, row in pairs for r in row.revisions if r["author"]}
    names |= {u for _, row in pairs for u in (*row.labels, *row.step_entries)}
    users = dict(get_user_model().objects.filter(username__in=names).values_list("username", "id"))
    missing: Counter = Counter()
    now = timezone.now()

    # Revisions: the file's history replaces the one revision the import wrote.
    histories = [(ex_id, row) for ex_id, row in pairs if row.revisions]
    revision_rows, versions = [], []
    for ex_id, row in histories:
        history = list(row.revisions)
        current = {"prompt": row.prompt, "reasoning": row.reasoning, "summary": row.summary, "gold_answer": row.gold_answer,
                   "language": row.language}
        if {k: history[-1][k] for k in REVISION_TEXT} != current:
            history.append({"author": user.username if user else None, "created_at": now, "note": "imported", **current})
        previous = None
        for number, r in enumerate(history, start=1):
            author_id = users.get(r["author"]) if r["author"] else None
            note = r["note"]
            if r["author"] and author_id is None:
                missing[r["author"]] += 1
                note = f"{note} (by {r['author']}, not a user here)".strip()
            changed = list(TEXT_FIELDS) if previous is None else [f for f in REVISION_TEXT if r[f] != previous[f]]
            revision_rows.append((ex_id, number, author_id, r["created_at"], note[:200], json.dumps(changed), *(r[f] for f in REVISION_TEXT)))
            previous = r
        versions.append(Example(pk=ex_id, version=len(history)))
    if histories:
        Revision.objects.filter(example_id__in=[ex_id for ex_id, _ in histories]).delete()
        _insert_revisions(revision_rows)
        Example.objects.bulk_update(versions, ["version"], batch_size=BULK_BATCH)

    # Labels, cleaned against this project's label set.
    label_objs, invalid = [], 0
    for ex_id, row in pairs:
        for username, values in row.labels.items():
            if username not in users:
                missing[username] += 1
                continue
            try:
                clean = label_rules.values_clean(project.label_schema, {k: v for k, v in values.items()})
            except ValidationError:
                invalid += 1
                continue
            if clean:
                label_objs.append(Label(example_id=ex_id, annotator_id=users[username], values=clean))
    Label.objects.bulk_create(label_objs, batch_size=BULK_BATCH)

    # Step verdicts, keyed by step text (they apply wherever this project's rule cuts the same steps).
    version_of = {e.pk: e.version for e in versions}
    step_objs = []
    for ex_id, row in pairs:
        for username, entries in row.step_entries.items():
            if username not in users:
                missing[username] += 1
                continue
            if any(e["label"] or e["note"] for e in entries):
                step_objs.append(StepLabel(example_id=ex_id, annotator_id=users[username], rule="imported",
                                           version=version_of.get(ex_id, 1), entries=entries))
    StepLabel.objects.bulk_create(step_objs, batch_size=BULK_BATCH)

    kept = (f"Kept from the file: {len(revision_rows)} revisions of {len(histories)} examples, {len(label_objs)} label sets, "
            f"{len(step_objs)} step-label sets.")
    left = []
    if missing:
        left.append("users not in this lab (" + ", ".join(f"{u}: {n}" for u, n in sorted(missing.items())[:20])
                    + (", …" if len(missing) > 20 else "") + "): their labels left out, their revisions kept without an author")
    if invalid:
        left.append(f"{invalid} label set(s) not valid for this project's label set, left out")
    unknown = sum(row.unknown_users for _, row in pairs)
    if unknown:
        left.append(f"{unknown} response(s) of users the file does not name (no r1lab_users.json), left out")
    return kept + (" " + "; ".join(left) + "." if left else "")
