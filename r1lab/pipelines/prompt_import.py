"""Prompt-set uploads: read a file as downloaded into prompt rows, stage it for the preview, and let
the user change the column mapping before anything is stored.

A row becomes `{"id", "prompt", "answer"?, "tests"?, "type", "target_lang"?}` (the trainer's prompt
JSONL, training_backend/data.py). The file is read by `r1lab.dataset_formats` (JSONL, CSV, Parquet,
a `datasets` save_to_disk folder; GSM8K, MATH, DeepScaleR / NuminaMath / Open-R1, chat, APPS,
MBPP or r1lab's own columns). All or nothing: the rows are stored (services.prompt_set_import) only
when no row has an error.

A staged upload is files under `R1LAB_DATA_DIR/uploads`: the file as uploaded (`<token>.upload`),
`<token>.json` with the form's values, the mapping, the errors and the first rows (what the preview
and its progress poll read), and, when every row is good, `<token>.rows.json` with all of them
(read once, when the import is confirmed).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from r1lab import dataset_formats
from r1lab.dataset_formats import Mapping, Parsed, RowError

TARGET = "prompts"
MAX_ERRORS = 200
PREVIEW_ROWS = 10


def parse_prompt_file(*, data: bytes, filename: str, kind: str, mapping: Mapping | None = None,
                      on_progress=None) -> Parsed:
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
                                     max_errors=MAX_ERRORS, on_progress=on_progress)


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
    rows: list[dict]  # the first good rows (the preview's)
    status: str = "ready"  # checking (a large file, in the background) | ready | invalid
    phase: str = ""
    done: int = 0  # rows checked so far (checking)
    total: int = 0  # rows in the file when it says (Parquet, save_to_disk), else 0

    @property
    def ok(self) -> bool:
        return self.status == "ready" and not self.error_count and self.count > 0

    @property
    def checking(self) -> bool:
        return self.status == "checking"

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

    def progress(self) -> dict:
        return {"status": self.status, "phase": self.phase, "done": self.done, "total": self.total, "message": ""}


def _uploads() -> Path:
    d = Path(settings.R1LAB_DATA_DIR) / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _paths(token: str) -> tuple[Path, Path]:
    return _uploads() / f"{token}.json", _uploads() / f"{token}.upload"


def _rows_path(token: str) -> Path:
    return _uploads() / f"{token}.rows.json"


def _write(path: Path, value) -> None:
    """Atomically (temp file + rename): the progress poll never reads half a file."""
    tmp = path.with_name(path.name + f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


def _save(staged: StagedUpload) -> StagedUpload:
    _write(_paths(staged.token)[0], staged.__dict__)
    return staged


def _parse_into(staged: StagedUpload, data: bytes, mapping: Mapping | None, on_progress=None) -> StagedUpload:
    result = parse_prompt_file(data=data, filename=staged.source_name, kind=staged.kind, mapping=mapping,
                               on_progress=on_progress)
    staged.mapping = result.mapping.to_dict() if result.mapping else {}
    staged.file_info = result.file_info() if result.mapping else {}
    staged.errors, staged.error_count = result.errors, result.error_count
    staged.count = len(result.rows)
    staged.rows = result.rows[:PREVIEW_ROWS]  # shown beside the errors too
    staged.status, staged.phase, staged.done, staged.total = ("ready" if result.ok else "invalid"), "", 0, 0
    if result.ok:  # what the confirmation stores
        _write(_rows_path(staged.token), result.rows)
    else:
        _rows_path(staged.token).unlink(missing_ok=True)
    return _save(staged)


def _check_later_or_now(staged: StagedUpload, data: bytes, mapping: Mapping | None) -> StagedUpload:
    if len(data) <= settings.R1LAB_IMPORT_BACKGROUND_BYTES:
        return _parse_into(staged, data, mapping)
    from r1lab.pipelines.tasks import DEFAULT_QUEUE, prompt_upload_check

    staged.status, staged.phase, staged.done, staged.total = "checking", "queued", 0, 0
    staged.mapping = mapping.to_dict() if mapping else {}
    staged.errors, staged.error_count, staged.rows, staged.count = [], 0, [], 0
    _rows_path(staged.token).unlink(missing_ok=True)
    _save(staged)
    token = staged.token
    transaction.on_commit(lambda: prompt_upload_check.apply_async((token,), queue=DEFAULT_QUEUE))
    return staged


def upload_stage(*, data: bytes, filename: str, name: str, kind: str, eval_fraction: float) -> StagedUpload:
    """Keep the upload and read it with the detected mapping (a file larger than
    R1LAB_IMPORT_BACKGROUND_BYTES in a Celery task, `upload_check`); nothing is imported."""
    token = uuid.uuid4().hex
    _, blob = _paths(token)
    blob.write_bytes(data)
    staged = StagedUpload(token=token, name=name, kind=kind, eval_fraction=eval_fraction, source_name=filename,
                          mapping={}, file_info={}, errors=[], error_count=0, count=0, rows=[])
    return _check_later_or_now(staged, data, None)


def upload_check(*, token: str) -> StagedUpload | None:
    """The background read of a large staged file (Celery), progress saved every 1,000 rows."""
    staged = upload_load(token)
    if staged is None or not staged.checking:
        return staged
    _, blob = _paths(token)

    def progress(done: int, total: int | None) -> None:
        staged.phase, staged.done, staged.total = "checking the file", done, total or 0
        _save(staged)

    progress(0, None)
    return _parse_into(staged, blob.read_bytes(), Mapping.from_dict(staged.mapping), on_progress=progress)


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
    """Read the staged file again with the user's mapping (a large one in the background)."""
    if staged.checking:
        raise ValueError("the file is still being checked")
    _, blob = _paths(staged.token)
    return _check_later_or_now(staged, blob.read_bytes(), mapping)


def upload_rows(staged: StagedUpload) -> list[dict]:
    """Every row of a staged upload without errors (empty otherwise)."""
    if not staged.ok:
        return []
    try:
        return json.loads(_rows_path(staged.token).read_text())
    except (OSError, ValueError):
        return []


def upload_discard(staged: StagedUpload) -> None:
    for path in (*_paths(staged.token), _rows_path(staged.token)):
        path.unlink(missing_ok=True)
