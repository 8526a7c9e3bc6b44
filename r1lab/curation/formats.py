"""File formats: parsing imports (JSONL, CSV) and writing exports (chat JSONL). Pure, no ORM.

docs/datasets.md describes both formats for users; keep the two in step.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from r1lab.curation.models import Example
from training_backend.rewards.language import LANGUAGES as SUPPORTED_LANGUAGES

# Accepted columns (JSONL keys / CSV headers).
TEXT_COLUMNS = ("prompt", "reasoning", "summary", "gold_answer", "language")
COLUMNS = (*TEXT_COLUMNS, "completion", "messages", "tags", "source", "source_ref", "id")
ALIASES = {"answer": "gold_answer", "question": "prompt", "problem": "prompt", "lang": "language"}
MAX_FIELD_CHARS = 200_000
MAX_ERRORS_KEPT = 500


@dataclass
class ParsedRow:
    line: int
    prompt: str
    reasoning: str = ""
    summary: str = ""
    gold_answer: str = ""
    language: str = "en"
    tags: list[str] = field(default_factory=list)
    source: str = Example.Source.IMPORTED
    source_ref: dict | None = None

    def preview(self) -> dict:
        return {
            "line": self.line, "prompt": self.prompt[:300], "reasoning": self.reasoning[:300],
            "summary": self.summary[:200], "gold_answer": self.gold_answer[:100], "language": self.language,
            "tags": self.tags, "source": self.source,
        }


@dataclass
class ParseResult:
    rows: list[ParsedRow]
    errors: list[dict]  # [{"line": n, "message": str}], at most MAX_ERRORS_KEPT
    error_count: int
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and bool(self.rows)


class RowError(ValueError):
    pass


def _split_completion(completion: str) -> tuple[str, str]:
    from training_backend.rewards import extract_answer, extract_think

    think = extract_think(completion)
    answer = extract_answer(completion)
    if think is None and answer is None:
        raise RowError("`completion` has neither <think>…</think> nor <answer>…</answer>")
    return (think or "").strip(), (answer or "").strip()


def _as_str(value, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"`{column}` must be text, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_FIELD_CHARS:
        raise RowError(f"`{column}` is longer than {MAX_FIELD_CHARS:,} characters")
    return text


def row_from_mapping(raw: dict, *, line: int, from_csv: bool) -> ParsedRow:
    data = {ALIASES.get(k, k): v for k, v in raw.items() if k is not None}
    # Other tools' columns (scores, metadata) are ignored; the preview lists them so a typo shows.
    data = {k: v for k, v in data.items() if k in COLUMNS}
    if "messages" in data and data["messages"] not in (None, ""):
        messages = data["messages"]
        if from_csv and isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as exc:
                raise RowError(f"`messages` is not JSON ({exc.msg})") from exc
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise RowError("`messages` must be a list of {role, content}")
        users = [m.get("content") for m in messages if m.get("role") == "user"]
        assistants = [m.get("content") for m in messages if m.get("role") == "assistant"]
        if not users or not assistants:
            raise RowError("`messages` needs a user and an assistant message")
        data.setdefault("prompt", users[0])
        data.setdefault("completion", assistants[-1])
    prompt = _as_str(data.get("prompt"), "prompt").strip()
    if not prompt:
        raise RowError("`prompt` is missing or empty")
    reasoning = _as_str(data.get("reasoning"), "reasoning")
    summary = _as_str(data.get("summary"), "summary")
    completion = _as_str(data.get("completion"), "completion")
    if completion.strip():
        if reasoning or summary:
            raise RowError("give either `completion` or `reasoning`/`summary`, not both")
        reasoning, summary = _split_completion(completion)
    if not reasoning.strip():
        raise RowError("`reasoning` is missing or empty (or give a `completion` with <think>…</think>)")
    language = (_as_str(data.get("language"), "language").strip() or "en")[:16]
    if language not in SUPPORTED_LANGUAGES:
        # The language-consistency check (training_backend's reward) knows only these; say so per
        # row instead of failing the whole import later with an exception.
        raise RowError(f"`language` {language!r} is not supported (supported: {', '.join(SUPPORTED_LANGUAGES)})")
    tags_raw = data.get("tags")
    if tags_raw in (None, ""):
        tags = []
    elif isinstance(tags_raw, list) and all(isinstance(t, str) for t in tags_raw):
        tags = [t.strip() for t in tags_raw if t.strip()]
    elif isinstance(tags_raw, str):
        tags = [t.strip() for t in tags_raw.split(",") if t.strip()]
    else:
        raise RowError("`tags` must be a list of strings (JSONL) or comma-separated text (CSV)")
    source = _as_str(data.get("source"), "source").strip() or Example.Source.IMPORTED
    if source not in Example.Source.values:
        raise RowError(f"`source` must be one of {', '.join(Example.Source.values)}, got {source!r}")
    source_ref = data.get("source_ref")
    if from_csv and isinstance(source_ref, str) and source_ref.strip():
        try:
            source_ref = json.loads(source_ref)
        except json.JSONDecodeError as exc:
            raise RowError(f"`source_ref` is not JSON ({exc.msg})") from exc
    if source_ref in ("", None):
        source_ref = None
    elif not isinstance(source_ref, dict):
        raise RowError("`source_ref` must be a JSON object")
    if data.get("id") not in (None, ""):
        source_ref = {**(source_ref or {}), "id": data["id"]}
    return ParsedRow(
        line=line, prompt=prompt, reasoning=reasoning, summary=summary,
        gold_answer=_as_str(data.get("gold_answer"), "gold_answer").strip(), language=language, tags=tags,
        source=source, source_ref=source_ref,
    )


def _collect(items, errors: list[dict], rows: list[ParsedRow], ignored: set, *, from_csv: bool) -> int:
    error_count = 0
    for line, raw in items:
        if isinstance(raw, dict):
            ignored.update(k for k in raw if k is not None and ALIASES.get(k, k) not in COLUMNS)
        try:
            if isinstance(raw, RowError):
                raise raw
            if not isinstance(raw, dict):
                raise RowError(f"a row must be a JSON object, got {type(raw).__name__}")
            rows.append(row_from_mapping(raw, line=line, from_csv=from_csv))
        except RowError as exc:
            error_count += 1
            if len(errors) < MAX_ERRORS_KEPT:
                errors.append({"line": line, "message": str(exc)})
    return error_count


def _jsonl_items(text: str):
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, RowError(f"not valid JSON: {exc.msg} (column {exc.colno})")


def _csv_items(text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        yield 1, RowError("the CSV file has no header row")
        return
    line = reader.line_num + 1
    for record in reader:
        if None in record:  # more cells than headers
            yield line, RowError(f"{len(record[None])} more cell(s) than the header has columns")
        else:
            yield line, {k.strip(): v for k, v in record.items() if k is not None}
        line = reader.line_num + 1


def parse_file(data: bytes, *, file_format: str) -> ParseResult:
    """Parse and validate every row; nothing is written. Errors name the file's line numbers."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ParseResult(rows=[], errors=[{"line": 0, "message": f"the file is not UTF-8 ({exc.reason} at byte {exc.start})"}], error_count=1)
    rows: list[ParsedRow] = []
    errors: list[dict] = []
    ignored: set = set()
    if file_format == "jsonl":
        count = _collect(_jsonl_items(text), errors, rows, ignored, from_csv=False)
    elif file_format == "csv":
        try:
            count = _collect(_csv_items(text), errors, rows, ignored, from_csv=True)
        except csv.Error as exc:
            return ParseResult(rows=[], errors=[{"line": 0, "message": f"CSV error: {exc}"}], error_count=1)
    else:
        raise ValueError(f"unknown format {file_format!r}")
    if not rows and not count:
        errors.append({"line": 0, "message": "the file has no rows"})
        count = 1
    return ParseResult(rows=rows, errors=errors, error_count=count, ignored_columns=sorted(map(str, ignored)))


def format_from_filename(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return None


def export_record(*, item_id: int, prompt: str, completion: str, gold_answer: str, language: str, source: str) -> dict:
    """One line of the chat-format JSONL that TRL's SFTTrainer and the SFT stage read."""
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
        "id": item_id,
        "gold_answer": gold_answer,
        "language": language,
        "source": source,
    }
