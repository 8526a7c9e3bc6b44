"""Parse an uploaded prompt file (JSONL or CSV) into prompt rows, with one message per bad row.

A row becomes `{"id", "prompt", "answer"?, "tests"?, "type", "target_lang"?}` (the trainer's
prompt JSONL). All or nothing: the caller stores nothing when any row has an error.
"""
from __future__ import annotations

import csv
import io
import json

ALLOWED = {"id", "prompt", "answer", "tests", "type", "target_lang"}
MAX_ERRORS = 200


def parse_prompt_file(*, data: bytes, filename: str, kind: str) -> tuple[list[dict], list[tuple[int, str]]]:
    """(rows, errors); errors are (line number, message), at most MAX_ERRORS of them."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [(0, f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]
    raw_rows: list[tuple[int, object]] = []
    if filename.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            return [], [(1, "the CSV header must have a `prompt` column")]
        for row in reader:
            raw_rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw_rows.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                raw_rows.append((n, ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})")))
    rows: list[dict] = []
    errors: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, raw in raw_rows:
        if len(errors) >= MAX_ERRORS:
            break
        row, msg = _row(raw, n, kind)
        if msg:
            errors.append((n, msg))
            continue
        if row["id"] in seen:
            errors.append((n, f"id {row['id']!r} is used already on line {seen[row['id']]}"))
            continue
        seen[row["id"]] = n
        rows.append(row)
    if not raw_rows:
        errors.append((0, "the file has no rows"))
    return rows, errors


def _row(raw, n: int, kind: str) -> tuple[dict, str | None]:
    if isinstance(raw, ValueError):
        return {}, str(raw)
    if not isinstance(raw, dict):
        return {}, "each line must be a JSON object"
    unknown = sorted(set(raw) - ALLOWED)
    if unknown:
        return {}, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ALLOWED))}"
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return {}, "`prompt` must be a non-empty string"
    row: dict = {"id": str(raw.get("id") or f"row-{n}"), "prompt": prompt, "type": raw.get("type") or kind}
    if row["type"] not in ("math", "code", "general"):
        return {}, f"`type` must be math, code or general, got {row['type']!r}"
    answer = raw.get("answer")
    if answer not in (None, ""):
        if not isinstance(answer, (str, int, float)):
            return {}, "`answer` must be a string or a number"
        row["answer"] = str(answer)
    elif row["type"] == "math":
        return {}, "a math prompt needs a gold `answer`"
    tests = raw.get("tests")
    if isinstance(tests, str) and tests.strip():  # CSV: a JSON list in a cell
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError:
            return {}, "`tests` must be a JSON list of strings"
    if tests not in (None, ""):
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            return {}, "`tests` must be a list of strings"
        row["tests"] = tests
    elif row["type"] == "code":
        return {}, "a code prompt needs `tests`"
    if raw.get("target_lang"):
        row["target_lang"] = str(raw["target_lang"])
    return row, None
