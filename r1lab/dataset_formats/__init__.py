"""Dataset files as people download them, read into r1lab's rows. Plain Python: no Django, no ORM.

- `readers`: the file (JSONL, CSV, Parquet, a `datasets` save_to_disk folder as .zip/.tar.gz)
  as numbered rows;
- `mapping`: which public format it is (GSM8K, MATH, DeepScaleR / NuminaMath / Open-R1, chat
  traces, APPS / MBPP code sets, r1lab's own), the column mapping, the gold answer per row, and
  the two row shapes the imports produce (prompt rows, cold-start examples);
- `read_rows` (here): one pass over a file with a mapping (detected unless given), every bad row
  an error with its line/row number.

The prompt-set import (r1lab/pipelines/prompt_import.py) and the cold-start import
(r1lab/curation/formats.py) both read through `read_rows`. docs/datasets.md is the user's page.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from r1lab.dataset_formats.mapping import (
    ANSWER_RULES,
    COLUMN_FIELDS,
    FIELD_HELP,
    FORMATS,
    Mapping,
    cold_start_fields,
    detect,
    gold_answer,
    prompt_row,
)
from r1lab.dataset_formats.readers import ACCEPTED, KINDS, FileError, RowError, Table, kind_from_filename, open_table

__all__ = [
    "ACCEPTED", "ANSWER_RULES", "COLUMN_FIELDS", "FIELD_HELP", "FORMATS", "KINDS", "FileError", "Mapping", "Parsed",
    "RowError", "Table", "cold_start_fields", "detect", "gold_answer", "kind_from_filename", "open_table", "prompt_row",
    "read_rows",
]
MAX_ERRORS_KEPT = 500


@dataclass
class Parsed:
    """Every row of a file read with one mapping: the good ones converted, the bad ones named."""

    rows: list
    errors: list[dict]  # [{"line": n | None, "message": str}], at most max_errors; None: the file or the mapping
    error_count: int
    mapping: Mapping | None  # None when the file could not be read at all
    columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    unit: str = "line"  # "line" (JSONL, CSV) or "row" (Parquet, save_to_disk)
    splits: list[str] = field(default_factory=list)
    num_rows: int = 0  # rows seen, good and bad

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and bool(self.rows)

    def file_info(self) -> dict:
        """What a preview needs to show and re-run the mapping (JSON-safe)."""
        return {"columns": self.columns, "unit": self.unit, "splits": self.splits, "ignored": self.ignored_columns}


def read_rows(data: bytes, *, kind: str, target: str, convert: Callable[[dict, int, Mapping, bool], object],
              mapping: Mapping | None = None, max_errors: int = MAX_ERRORS_KEPT,
              on_progress: Callable[[int, int | None], None] | None = None) -> Parsed:
    """Read every row of `data` (a file of `kind`) with `mapping` (detected when None).

    `convert(raw, number, mapping, text_cells)` turns one row into the target's row or raises
    RowError; its message becomes that row's error. Nothing is written anywhere. `on_progress(done,
    total)` is called every 1,000 rows (total None when the file does not say).
    """
    rows: list = []
    errors: list[dict] = []
    count = 0

    def fail(number, message: str) -> None:
        nonlocal count
        count += 1
        if len(errors) < max_errors:
            errors.append({"line": number, "message": message})

    try:
        with open_table(data, kind=kind, split=mapping.split if mapping else "") as table:
            if mapping is None:
                mapping = detect(table.columns, table.sample())
            mapping = replace(mapping, split=table.split)
            parsed = Parsed(rows=rows, errors=errors, error_count=0, mapping=mapping, columns=table.columns,
                            unit=table.unit, splits=table.splits,
                            ignored_columns=sorted(set(table.columns) - mapping.columns_used(target)))
            problems = mapping.problems(target=target, columns=table.columns)
            for name, message in problems.items():
                fail(None, f"mapping, {name}: {message}")
            seen = 0
            if not problems:
                for number, raw in table.rows():
                    seen += 1
                    try:
                        if isinstance(raw, RowError):
                            raise raw
                        rows.append(convert(raw, number, mapping, table.text_cells))
                    except RowError as exc:
                        fail(number, str(exc))
                    if on_progress and seen % 1000 == 0:
                        on_progress(seen, table.num_rows)
                if not seen:
                    fail(0, "the file has no rows")
    except FileError as exc:
        fail(0, str(exc))
        return Parsed(rows=[], errors=errors, error_count=count, mapping=None)
    parsed.error_count, parsed.num_rows = count, seen
    return parsed
