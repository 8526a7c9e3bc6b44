"""Prompt-set uploads: read a file as downloaded into prompt rows, stage it for the preview, and let
the user change the column mapping before anything is stored.

A row becomes `{"id", "prompt", "answer"?, "tests"?, "type", "target_lang"?}` (the trainer's prompt
JSONL, training_backend/data.py). The file is read by `r1lab.dataset_formats` (JSONL, CSV, Parquet,
a `datasets` save_to_disk folder; GSM8K, MATH, DeepScaleR / NuminaMath / Open-R1, chat, APPS,
MBPP or r1lab's own columns). All or nothing: the rows are stored (services.prompt_set_import) only
when no row has an error.

A staged upload is two files under `R1LAB_DATA_DIR/uploads`: the file as uploaded, and
`<token>.json` with the form's values, the mapping, and (when every row is good) the rows.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from r1lab import dataset_formats
from r1lab.dataset_formats import Mapping, Parsed, RowError

TARGET = "prompts"
MAX_ERRORS = 200
PREVIEW_ROWS = 10


def parse_prompt_file(*, data: bytes, filename: str, kind: str, mapping: Mapping | None = None) -> Parsed:
    """Every row of the file as a prompt row, or its error with its line (row) number; the mapping
    is detected unless given."""
    file_kind = dataset_formats.kind_from_filename(filename)
    if file_kind is None:
        return Parsed(rows=[], errors=[{"line": 0, "message": f"upload {dataset_formats.ACCEPTED} file"}],
                      error_count=1, mapping=None)
    unit = "line" if file_kind in ("jsonl", "csv") else "row"
    seen: dict[str, int] = {}

    def convert(raw: dict, number: int, m: Mapping, text_cells: bool) -> dict:
        row = dataset_formats.prompt_row(raw, mapping=m, number=number, kind=kind, text_cells=text_cells)
        if row["id"] in seen:
            raise RowError(f"id {row['id']!r} is used already on {unit} {seen[row['id']]}")
        seen[row["id"]] = number
        return row

    return dataset_formats.read_rows(data, kind=file_kind, target=TARGET, convert=convert, mapping=mapping,
                                     max_errors=MAX_ERRORS)


@dataclass
class StagedUpload:
    """An uploaded prompt file waiting for the user's confirmation (what the preview shows)."""

    token: str
    name: str
    kind: str
    eval_fraction: float
    source_name: str
    mapping: dict
    file_info: dict
    errors: list[dict]
    error_count: int
    count: int  # good rows
    rows: list[dict]  # every row when there is no error, else none

    @property
    def ok(self) -> bool:
        return not self.error_count and bool(self.rows)

    @property
    def n_eval(self) -> int:
        return int(round(self.count * self.eval_fraction))

    @property
    def n_train(self) -> int:
        return self.count - self.n_eval

    @property
    def preview_rows(self) -> list[dict]:
        return self.rows[:PREVIEW_ROWS]

    @property
    def format_label(self) -> str:
        m = Mapping.from_dict(self.mapping)
        return m.label if m else ""


def _uploads() -> Path:
    d = Path(settings.R1LAB_DATA_DIR) / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _paths(token: str) -> tuple[Path, Path]:
    return _uploads() / f"{token}.json", _uploads() / f"{token}.upload"


def _parse_into(staged: StagedUpload, data: bytes, mapping: Mapping | None) -> StagedUpload:
    result = parse_prompt_file(data=data, filename=staged.source_name, kind=staged.kind, mapping=mapping)
    staged.mapping = result.mapping.to_dict() if result.mapping else {}
    staged.file_info = result.file_info() if result.mapping else {}
    staged.errors, staged.error_count = result.errors, result.error_count
    staged.count = len(result.rows)
    # every row when all are good (they are what the confirmation stores); else the first good ones,
    # which the preview still shows beside the errors
    staged.rows = result.rows if result.ok else result.rows[:PREVIEW_ROWS]
    meta, _ = _paths(staged.token)
    meta.write_text(json.dumps(staged.__dict__))
    return staged


def upload_stage(*, data: bytes, filename: str, name: str, kind: str, eval_fraction: float) -> StagedUpload:
    """Keep the upload and read it with the detected mapping; nothing is imported."""
    token = uuid.uuid4().hex
    _, blob = _paths(token)
    blob.write_bytes(data)
    staged = StagedUpload(token=token, name=name, kind=kind, eval_fraction=eval_fraction, source_name=filename,
                          mapping={}, file_info={}, errors=[], error_count=0, count=0, rows=[])
    return _parse_into(staged, data, None)


def upload_load(token: str) -> StagedUpload | None:
    """The staged upload of `token`; None when there is none (expired, imported, or a forged token)."""
    if not token or not token.isalnum():
        return None
    meta, blob = _paths(token)
    if not blob.is_file():
        return None
    try:
        return StagedUpload(**json.loads(meta.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def upload_remap(*, staged: StagedUpload, mapping: Mapping) -> StagedUpload:
    """Read the staged file again with the user's mapping."""
    _, blob = _paths(staged.token)
    return _parse_into(staged, blob.read_bytes(), mapping)


def upload_discard(staged: StagedUpload) -> None:
    for path in _paths(staged.token):
        path.unlink(missing_ok=True)
