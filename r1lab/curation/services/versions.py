"""Dataset versions: freeze the approved examples into an immutable, hashed version; export it
as chat-format JSONL; record who trained on it (lineage)."""
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

from r1lab.curation import formats
from r1lab.curation.models import (
    CurationProject,
    DatasetVersion,
    DatasetVersionItem,
    DatasetVersionUse,
    Example,
    assemble_completion,
)
from r1lab.curation.services.bulk import BULK_BATCH


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
