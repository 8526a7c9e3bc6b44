"""File formats: parsing cold-start imports and writing exports (chat JSONL). Pure, no ORM.

Reading the file, recognising its format (GSM8K, MATH, Open-R1 traces, chat, r1lab's own, ...),
the column mapping and the gold answers are `r1lab.dataset_formats`' (shared with the prompt-set
import); this module validates what makes a cold-start example (a prompt, reasoning, a supported
language, a known source). docs/datasets.md describes the formats for users; keep them in step.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from r1lab import dataset_formats
from r1lab.curation.models import Example
from r1lab.dataset_formats import Mapping, Parsed, RowError
from training_backend.rewards.language import LANGUAGES as SUPPORTED_LANGUAGES

TARGET = "cold_start"
MAX_FIELD_CHARS = 200_000
MAX_ERRORS_KEPT = 500
__all__ = ["Mapping", "Parsed", "ParsedRow", "RowError", "export_record", "format_from_filename", "parse_file", "row_from_fields"]


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


def _split_completion(completion: str) -> tuple[str, str]:
    """(reasoning, summary) of `<think>…</think>` + `<answer>…</answer>` or R1's plain summary.

    The summary is the `<answer>` span; without one, the text after `</think>` (R1 and its distills
    write a summary there, its final answer in `\\boxed{}`); without that, the last box.
    """
    from training_backend.rewards import extract_answer, extract_think

    think = extract_think(completion)
    answer = extract_answer(completion)
    if think is None and answer is None:
        raise RowError("`completion` has neither <think>…</think> nor <answer>…</answer>")
    if "<answer>" not in completion and "</think>" in completion:
        after = completion.rsplit("</think>", 1)[1].strip()
        answer = after or answer
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


def row_from_fields(data: dict, *, line: int, from_csv: bool) -> ParsedRow:
    """Validate one example given in r1lab's column names (`dataset_formats.cold_start_fields`)."""
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


def _convert(raw: dict, number: int, mapping: Mapping, text_cells: bool) -> ParsedRow:
    fields = dataset_formats.cold_start_fields(raw, mapping=mapping, text_cells=text_cells)
    return row_from_fields(fields, line=number, from_csv=text_cells)


def parse_file(data: bytes, *, file_format: str, mapping: Mapping | None = None,
               on_progress: Callable[[int, int | None], None] | None = None) -> Parsed:
    """Parse and validate every row with `mapping` (detected when None); nothing is written.
    Errors name the file's line numbers (JSONL, CSV) or row numbers (Parquet, save_to_disk)."""
    return dataset_formats.read_rows(data, kind=file_format, target=TARGET, convert=_convert, mapping=mapping,
                                     max_errors=MAX_ERRORS_KEPT, on_progress=on_progress)


def format_from_filename(name: str) -> str | None:
    """jsonl, csv, parquet or arrow (a save_to_disk folder as .zip/.tar.gz); None for anything else."""
    return dataset_formats.kind_from_filename(name)


def export_record(*, item_id: int, prompt: str, completion: str, gold_answer: str, language: str, source: str) -> dict:
    """One line of the chat-format JSONL that TRL's SFTTrainer and the SFT stage read."""
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
        "id": item_id,
        "gold_answer": gold_answer,
        "language": language,
        "source": source,
    }
