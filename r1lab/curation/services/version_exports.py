"""A frozen dataset version leaving the lab (issue 18), besides the chat JSONL (versions.py):

- `dataset_version_stepwise_path`: process-supervision JSONL in TRL's stepwise layout;
- `dataset_version_hf_dir` / `dataset_version_hf_zip`: a Hugging Face `datasets` folder (Parquet
  shards, the dataset card; hf_dataset.py);
- `dataset_version_argilla_dir` / `dataset_version_argilla_zip`: Argilla records (argilla.py).

Everything is built from the frozen rows (and the revisions up to each row's frozen version, which
never change), so an export is the same whenever it is made; each is written once under
R1LAB_DATA_DIR/datasets/ with the content hash in its name, atomically (a temporary name, then a
rename), and reused.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings

from r1lab.curation import argilla, hf_dataset
from r1lab.curation import steps as step_rules
from r1lab.curation.models import DatasetVersion, DatasetVersionItem, Revision

CHUNK = 2000
_COMPLETION_RE = re.compile(r"\A<think>(.*)</think><answer>(.*)</answer>\Z", re.S)


def _directory() -> Path:
    path = Path(settings.R1LAB_DATA_DIR) / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _base_name(version: DatasetVersion) -> str:
    return f"{version.project.slug}-v{version.number}-{version.content_hash[:16]}"


def _label_schema(version: DatasetVersion) -> list[dict]:
    """The label set as it was at the freeze (the project's current one for versions frozen before issue 18)."""
    return version.stats.get("made_with", {}).get("label_schema") or version.project.label_schema


def _parts(item: DatasetVersionItem) -> tuple[str, str]:
    """(reasoning, summary) of a frozen row; rows frozen before issue 18 only kept the completion."""
    if item.reasoning or item.summary:
        return item.reasoning, item.summary
    m = _COMPLETION_RE.match(item.completion)
    return (m.group(1), m.group(2)) if m else (item.completion, "")


def _row(item: DatasetVersionItem, history: list[Revision], schema_keys: list[str]) -> dict:
    reasoning, summary = _parts(item)
    steps = item.steps or {}
    return {
        "id": item.example_ref, "prompt": item.prompt, "reasoning": reasoning, "summary": summary, "completion": item.completion,
        "messages": [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": item.completion}],
        "gold_answer": item.gold_answer, "language": item.language, "source": item.source, "tags": list(item.tags or []),
        "row_hash": item.row_hash,
        "labels": [{"annotator": user, "values": {k: values.get(k) for k in schema_keys}} for user, values in sorted((item.labels or {}).items())],
        "steps": steps.get("texts", []), "step_labels": steps.get("labels", []), "first_wrong_step": steps.get("first_wrong"),
        "step_annotations": [{"annotator": a["annotator"], "labels": a["labels"], "notes": a["notes"]} for a in steps.get("annotations", [])],
        "revisions": [{
            "number": r.number, "author": r.author.username if r.author else None, "created_at": r.created_at.isoformat(),
            "note": r.note, "prompt": r.prompt, "reasoning": r.reasoning, "summary": r.summary, "gold_answer": r.gold_answer,
            "language": r.language,
        } for r in history],
        "step_spans": [tuple(span) for span in steps.get("spans", [])],  # for the Argilla spans; not a column
    }


def version_rows(version: DatasetVersion) -> Iterator[dict]:
    """Every row of the version, in example order, with its history: the example's revisions up to
    the version it had when frozen (none for rows frozen before issue 18)."""
    keys = [q["key"] for q in _label_schema(version)]
    last = -1
    while True:  # keyset pages: example_ref is unique within a version
        chunk = list(version.items.filter(example_ref__gt=last).order_by("example_ref")[:CHUNK])
        if not chunk:
            return
        last = chunk[-1].example_ref
        wanted = {i.example_ref: i.example_version for i in chunk if i.example_version}
        history: dict[int, list[Revision]] = {}
        for rev in (Revision.objects.filter(example_id__in=list(wanted)).select_related("author").order_by("example_id", "number")):
            if rev.number <= wanted[rev.example_id]:
                history.setdefault(rev.example_id, []).append(rev)
        for item in chunk:
            yield _row(item, history.get(item.example_ref, []), keys)


def stepwise_rows(version: DatasetVersion) -> Iterator[dict]:
    """The version's process-supervision rows (steps.stepwise_row): rows whose first wrong step is known."""
    for item in version.items.exclude(steps={}).order_by("example_ref").iterator(chunk_size=CHUNK):
        steps = item.steps
        row = step_rules.stepwise_row(prompt=item.prompt, steps=steps["texts"], labels=steps["labels"])
        if row is not None:
            yield {**row, "id": item.example_ref}


def _write_once(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` then rename to `path`; an existing `path` (same content hash) is reused."""
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)  # a file or an empty target name: atomic
    except OSError:
        if path.exists():  # someone else wrote the same content meanwhile
            return path
        raise
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return path


def dataset_version_stepwise_path(*, version: DatasetVersion) -> Path:
    """Process-supervision JSONL: {"prompt", "completions", "labels", "step_labels", "first_wrong_step", "id"} a line."""
    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in stepwise_rows(version):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    return _write_once(_directory() / f"{_base_name(version)}-stepwise.jsonl", write)


def dataset_version_hf_dir(*, version: DatasetVersion) -> Path:
    """The version as a Hugging Face `datasets` folder (hf_dataset.py)."""
    stats = version.stats or {}
    made = stats.get("made_with", {})

    def write(tmp: Path) -> None:
        stepwise = list(stepwise_rows(version))
        languages = sorted(set(version.items.values_list("language", flat=True).distinct()))
        card = hf_dataset.card(
            name=version.project.name, description=made.get("description", version.project.description), version=version.number,
            content_hash=version.content_hash, created_at=version.created_at.isoformat(timespec="seconds"),
            frozen_by=version.created_by.username if version.created_by else made.get("frozen_by", ""), note=version.note,
            changelog=version.changelog, stats=stats, languages=languages, rows=version.example_count, stepwise_rows=len(stepwise),
        )
        rows = ({k: v for k, v in row.items() if k != "step_spans"} for row in version_rows(version))
        hf_dataset.write_folder(tmp, rows=rows, total=version.example_count, stepwise=stepwise, label_schema=_label_schema(version),
                                card=card, extra_files={"changelog.json": json.dumps(version.changelog, indent=1)})

    return _write_once(_directory() / f"{_base_name(version)}-hf", write)


def dataset_version_argilla_dir(*, version: DatasetVersion) -> Path:
    """The version as an Argilla dataset folder (argilla.py), for `rg.Dataset.from_disk`."""
    made = (version.stats or {}).get("made_with", {})

    def write(tmp: Path) -> None:
        argilla.write_folder(
            tmp, rows=version_rows(version), label_schema=_label_schema(version), name=_base_name(version),
            guidelines=(f"{version.project.name} v{version.number} (r1lab, content hash {version.content_hash[:16]}). "
                        f"{made.get('description', '')}").strip(),
            overlap=made.get("overlap", version.project.overlap),
        )

    return _write_once(_directory() / f"{_base_name(version)}-argilla", write)


def _zip_of(directory: Path) -> Path:
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                zf.write(path, f"{directory.name}/{path.relative_to(directory).as_posix()}")

    return _write_once(directory.with_name(directory.name + ".zip"), write)


def dataset_version_hf_zip(*, version: DatasetVersion) -> Path:
    return _zip_of(dataset_version_hf_dir(version=version))


def dataset_version_argilla_zip(*, version: DatasetVersion) -> Path:
    return _zip_of(dataset_version_argilla_dir(version=version))
