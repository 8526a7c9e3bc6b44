"""Dataset versions: freeze the approved examples into an immutable, hashed version; export it
as chat-format JSONL (the other exports: version_exports.py); record who trained on it (lineage).

A frozen row keeps what the exports need as it was at the freeze (issue 18): the text, the
example's version (its revisions up to it are its history), every annotator's labels, and the
steps with every annotator's verdicts and their consensus; the version keeps the counts and the
project settings its dataset card states (`DatasetVersion.stats`)."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from django.utils import timezone

from r1lab.curation import formats
from r1lab.curation import labels as label_rules
from r1lab.curation import steps as step_rules
from r1lab.curation.models import (
    CurationProject,
    DatasetVersion,
    DatasetVersionItem,
    DatasetVersionUse,
    Example,
    Label,
    StepLabel,
    assemble_completion,
)
from r1lab.curation.selectors.projects import project_status_counts
from r1lab.curation.services.bulk import BULK_BATCH


def _row_hash(*, prompt: str, completion: str, gold_answer: str, language: str, step_labels: dict | None = None) -> str:
    """SHA-256 of [prompt, completion, gold_answer, language], plus {"rule", "labels"} (the consensus
    step labels) when the row has step labels: a changed verdict makes a new version; rows without
    step labels hash as they always did."""
    parts = [prompt, completion, gold_answer, language]
    if step_labels:
        parts.append(step_labels)
    canonical = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _frozen_steps(*, reasoning: str, rule: str, annotations: dict[str, list[dict]]) -> dict:
    """The steps of `reasoning` with every annotator's verdicts mapped onto them (by step text) and
    their consensus; {} when no annotator gave a verdict on the current steps."""
    split = step_rules.split_steps(reasoning, rule)
    mapped = {user: step_rules.map_entries(split.hashes, entries) for user, entries in sorted(annotations.items())}
    mapped = {user: m for user, m in mapped.items() if any(m.labels) or any(m.notes)}
    if not mapped:
        return {}
    labels = step_rules.consensus([m.labels for m in mapped.values()])
    return {
        "rule": split.used, "texts": split.texts, "spans": [[s.start, s.end] for s in split.steps], "labels": labels,
        "first_wrong": step_rules.first_wrong_step(labels),
        "annotations": [{"annotator": user, "labels": m.labels, "notes": m.notes} for user, m in mapped.items()],
    }


def _freeze_stats(*, project: CurationProject, user, note: str, rows: list[DatasetVersionItem]) -> dict:
    """What the dataset card states, as it is now: status counts, label and step-label counts, how it was made."""
    schema = {q["key"]: q for q in project.label_schema}
    labels: dict[str, dict[str, int]] = {key: {} for key in schema}
    steps = {"rows_with_steps": 0, "stepwise_rows": 0, "steps": 0, **{label: 0 for label in step_rules.LABELS}, "unresolved": 0}
    for r in rows:
        for values in r.labels.values():
            for key, value in values.items():
                shown = "answered" if schema[key]["type"] == "text" else ("yes" if value is True else "no" if value is False else str(value))
                labels[key][shown] = labels[key].get(shown, 0) + 1
        if r.steps:
            steps["rows_with_steps"] += 1
            steps["stepwise_rows"] += r.steps["first_wrong"] is not None
            steps["steps"] += len(r.steps["labels"])
            for label in r.steps["labels"]:
                steps[label or "unresolved"] += 1
    return {
        "status_counts": project_status_counts(project=project),
        "labels": {key: dict(sorted(counts.items())) for key, counts in labels.items()},
        "step_labels": steps,
        "made_with": {
            "project": project.name, "slug": project.slug, "description": project.description,
            "target_language": project.target_language, "overlap": project.overlap, "label_schema": project.label_schema,
            "step_split": project.step_split, "license": project.license,
            "frozen_by": getattr(user, "username", ""), "frozen_at": timezone.now().isoformat(timespec="seconds"), "note": note,
        },
    }


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
        project = CurationProject.objects.select_for_update().get(pk=project.pk)
        approved = Example.objects.filter(project=project, status=Example.Status.APPROVED)
        questions = {q["key"]: q for q in project.label_schema}
        labels: dict[int, dict[str, dict]] = {}
        for ex_id, username, values in (Label.objects.filter(example__in=approved).order_by("annotator__username")
                                        .values_list("example_id", "annotator__username", "values")):
            # Answers to the current label set only (it may have changed since they were given).
            kept = {k: v for k, v in (values or {}).items() if k in questions and label_rules.value_fits(questions[k], v)}
            if kept:
                labels.setdefault(ex_id, {})[username] = kept
        verdicts: dict[int, dict[str, list]] = {}
        for ex_id, username, entries in StepLabel.objects.filter(example__in=approved).values_list("example_id", "annotator__username", "entries"):
            verdicts.setdefault(ex_id, {})[username] = entries
        rows = []
        for ex in approved.order_by("id").iterator(chunk_size=2000):
            completion = assemble_completion(ex.reasoning, ex.summary)
            steps = _frozen_steps(reasoning=ex.reasoning, rule=project.step_split, annotations=verdicts[ex.pk]) if ex.pk in verdicts else {}
            rows.append(DatasetVersionItem(
                example_id=ex.pk, example_ref=ex.pk, prompt=ex.prompt, completion=completion, gold_answer=ex.gold_answer,
                language=ex.language, source=ex.source, reasoning=ex.reasoning, summary=ex.summary, example_version=ex.version,
                tags=ex.tags, labels=labels.get(ex.pk, {}), steps=steps,
                row_hash=_row_hash(prompt=ex.prompt, completion=completion, gold_answer=ex.gold_answer, language=ex.language,
                                   step_labels={"rule": steps["rule"], "labels": steps["labels"]} if steps else None),
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
            stats=_freeze_stats(project=project, user=user, note=note[:300], rows=rows),
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
