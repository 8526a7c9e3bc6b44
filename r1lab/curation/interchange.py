"""Importing the formats a dataset version leaves the lab in (issue 18): a .zip of the Hugging Face
`datasets` folder (hf_dataset.py) or of the Argilla records folder (argilla.py). Pure, no ORM.

The import path (services.import_jobs) asks this module for the file's format and its rows; other
formats (JSONL, CSV, …) are formats.py's, and this module hands them on unchanged. Each row is
validated as formats.row_from_fields validates any row (the same columns and errors, with ALIASES),
then what the format has beyond the text is kept on the row (`InterchangeRow`): the revisions,
every annotator's labels and step verdicts, by username. services.import_extras writes them in the
import's transaction; the usernames are matched to this lab's users there.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ValidationError

from r1lab.curation import argilla, formats, hf_dataset
from r1lab.curation import steps as step_rules

HF, ARGILLA = "hf", "argilla"
FORMATS = (HF, ARGILLA)
MAX_ZIP_MEMBERS = 10_000
MAX_UNCOMPRESSED = 512 * 1024 * 1024  # what is read out of one zip, all members together
REVISION_TEXT = ("prompt", "reasoning", "summary", "gold_answer", "language")


@dataclass
class InterchangeRow(formats.ParsedRow):
    """A row with what its format kept besides the text."""

    revisions: list[dict] = field(default_factory=list)  # [{"number", "author", "created_at", "note", *REVISION_TEXT}]
    labels: dict[str, dict] = field(default_factory=dict)  # {username: {key: value}}
    step_entries: dict[str, list[dict]] = field(default_factory=dict)  # {username: [{"h", "label", "note"}]}
    unknown_users: int = 0  # responses whose user the file does not name (Argilla without r1lab_users.json)

    def preview(self) -> dict:
        return {**super().preview(), "revisions": len(self.revisions), "label_sets": len(self.labels),
                "step_label_sets": len(self.step_entries)}


# --- the format of an upload --------------------------------------------------------------------------
def _zip(data: bytes) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValidationError(f"The .zip file cannot be read ({exc}).") from exc
    if len(zf.infolist()) > MAX_ZIP_MEMBERS:
        raise ValidationError(f"The .zip file holds more than {MAX_ZIP_MEMBERS:,} files.")
    return zf


def export_format(filename: str, data: bytes) -> str | None:
    """HF or ARGILLA for a .zip of one of the two folders a dataset version is exported as, else
    None (any other file, a `datasets` save_to_disk archive included, is dataset_formats')."""
    if not filename.lower().endswith(".zip"):
        return None
    try:
        names = [i.filename for i in _zip(data).infolist() if not i.is_dir()]
    except ValidationError:
        return None  # not readable as our .zip: dataset_formats says why
    if argilla.looks_like_folder(names):
        return ARGILLA
    if hf_dataset.looks_like_folder(names):
        return HF
    return None


def _read(zf: zipfile.ZipFile, names: list[str]) -> dict[str, bytes]:
    """The members `names`, at most MAX_UNCOMPRESSED bytes in all (whatever their headers claim)."""
    out, left = {}, MAX_UNCOMPRESSED
    for name in names:
        with zf.open(name) as fh:
            data = fh.read(left + 1)
        if len(data) > left:
            raise ValidationError(f"The .zip file unpacks to more than {MAX_UNCOMPRESSED // 2**20} MiB.")
        left -= len(data)
        out[name] = data
    return out


def _parsed(rows: list, errors: list[dict], count: int) -> formats.Parsed:
    return formats.Parsed(rows=rows, errors=errors, error_count=count, mapping=None, num_rows=len(rows) + count)


# Other tools' names for r1lab's columns, in the records these folders hold.
ALIASES = {"answer": "gold_answer", "question": "prompt", "problem": "prompt", "lang": "language"}


def _row(core: dict, *, line: int) -> formats.ParsedRow:
    return formats.row_from_fields({ALIASES.get(k, k): v for k, v in core.items()}, line=line, from_csv=False)


def parse_file(data: bytes, *, file_format: str) -> formats.Parsed:
    """Every row of an exported folder (HF or ARGILLA) parsed and validated; nothing written."""
    try:
        zf = _zip(data)
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        if file_format == HF:
            items = _hf_items(_read(zf, [n for n in names if n.endswith(".parquet") and "/" + hf_dataset.DEFAULT_DIR + "/" in "/" + n]))
        else:
            records, settings_json, users_json = argilla.folder_files(_read(zf, [
                n for n in names if n.rsplit("/", 1)[-1] in (argilla.RECORDS, "settings.json", argilla.USERS)]))
            items = _argilla_items(records, settings_json, users_json)
    except ValidationError as exc:
        return _parsed([], [{"line": 0, "message": " ".join(exc.messages)}], 1)
    rows, errors, count = [], [], 0
    for line, item in items:
        try:
            if isinstance(item, formats.RowError):
                raise item
            rows.append(item())
        except formats.RowError as exc:
            count += 1
            if len(errors) < formats.MAX_ERRORS_KEPT:
                errors.append({"line": line, "message": str(exc)})
    if not rows and not count:
        errors, count = [{"line": 0, "message": "the file has no rows"}], 1
    return _parsed(rows, errors, count)


# --- Hugging Face folder ---------------------------------------------------------------------------------
def _hf_items(files: dict[str, bytes]) -> list:
    try:
        rows = list(hf_dataset.read_rows(files))
    except ValueError as exc:
        raise ValidationError(f"A Parquet file of the folder cannot be read: {exc}") from exc
    return [(line, lambda raw=raw, line=line, shard=shard: _hf_row(raw, line=line, shard=shard))
            for line, (shard, raw) in enumerate(rows, start=1)]


def _hf_row(raw: dict, *, line: int, shard: str) -> InterchangeRow:
    where = f"{shard}: "
    try:
        core = {k: raw.get(k) for k in ("prompt", "reasoning", "summary", "gold_answer", "language", "tags", "source", "id") if k in raw}
        if core.get("tags") is None:
            core.pop("tags", None)
        row = _with_core(_row(core, line=line))
        row.revisions = _revisions(raw.get("revisions"))
        row.labels = {}
        for ann in raw.get("labels") or []:
            user, values = _annotator(ann), ann.get("values") if isinstance(ann, dict) else None
            if not isinstance(values, dict):
                raise formats.RowError("`labels` must be a list of {annotator, values}")
            kept = {k: v for k, v in values.items() if v is not None}
            if kept:
                row.labels[user] = kept
        steps = raw.get("steps") or []
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise formats.RowError("`steps` must be a list of strings")
        row.step_entries = {}
        for ann in raw.get("step_annotations") or []:
            user = _annotator(ann)
            labels, notes = ann.get("labels") or [], ann.get("notes") or [""] * len(steps)
            if len(labels) != len(steps) or len(notes) != len(steps):
                raise formats.RowError(f"`step_annotations` of {user}: one label and one note per step ({len(steps)} steps)")
            if any(label not in ("", *step_rules.LABELS) for label in labels):
                raise formats.RowError(f"`step_annotations` of {user}: a label is not one of {', '.join(step_rules.LABELS)}")
            row.step_entries[user] = [{"h": step_rules.step_hash(text), "label": label or "", "note": (note or "")[:step_rules.MAX_NOTE]}
                                      for text, label, note in zip(steps, labels, notes)]
        return row
    except formats.RowError as exc:
        raise formats.RowError(where + str(exc)) from None


def _with_core(parsed: formats.ParsedRow) -> InterchangeRow:
    return InterchangeRow(**{name: getattr(parsed, name) for name in formats.ParsedRow.__dataclass_fields__})


def _annotator(ann) -> str:
    if not isinstance(ann, dict) or not isinstance(ann.get("annotator"), str) or not ann["annotator"].strip():
        raise formats.RowError("every annotation needs an `annotator` (a username)")
    return ann["annotator"].strip()[:150]


def _revisions(raw) -> list[dict]:
    if raw in (None, []):
        return []
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise formats.RowError("`revisions` must be a list of objects")
    out = []
    for r in sorted(raw, key=lambda r: r.get("number") if isinstance(r.get("number"), int) else -1):
        if not isinstance(r.get("number"), int) or r["number"] < 1:
            raise formats.RowError("every revision needs a `number` (1, 2, …)")
        try:
            created = datetime.fromisoformat(r.get("created_at") or "")
        except (TypeError, ValueError):
            raise formats.RowError(f"revision {r['number']}: `created_at` is not an ISO date and time") from None
        text = {}
        for name in REVISION_TEXT:
            value = r.get(name)
            if value is not None and not isinstance(value, str):
                raise formats.RowError(f"revision {r['number']}: `{name}` must be text")
            if value and len(value) > formats.MAX_FIELD_CHARS:
                raise formats.RowError(f"revision {r['number']}: `{name}` is longer than {formats.MAX_FIELD_CHARS:,} characters")
            text[name] = value or ""
        author = r.get("author")
        out.append({"number": r["number"], "author": author.strip()[:150] if isinstance(author, str) and author.strip() else None,
                    "created_at": created, "note": str(r.get("note") or "")[:150], **text})
    return out


# --- Argilla records -----------------------------------------------------------------------------------------
def _json(data: bytes | None, what: str):
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{what} is not valid JSON ({exc}).") from exc


def _argilla_items(records_json: bytes, settings_json: bytes | None, users_json: bytes | None) -> list:
    records = _json(records_json, "records.json")
    if not isinstance(records, list):
        raise ValidationError("records.json must be a JSON list of records.")
    types = argilla.question_types(_json(settings_json, "settings.json"))
    users = _json(users_json, "r1lab_users.json") or {}
    if not isinstance(users, dict):
        raise ValidationError("r1lab_users.json must map Argilla user ids to usernames.")
    return [(line, lambda record=record, line=line: _argilla_row(record, line=line, types=types, users=users))
            for line, record in enumerate(records, start=1)]


def _argilla_row(record, *, line: int, types: dict[str, str], users: dict[str, str]) -> InterchangeRow:
    where = f"record {line}: "
    try:
        if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
            raise formats.RowError("a record must be an object with `fields`")
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        core = {k: v for k, v in record["fields"].items() if k in (*argilla.TEXT_FIELDS, *ALIASES)}
        for k in ("language", "source"):
            if metadata.get(k) not in (None, ""):
                core[k] = metadata[k]
        core["id"] = metadata.get("example_id", record.get("id"))
        row = _with_core(_row(core, line=line))
        responses = record.get("responses") or {}
        if not isinstance(responses, dict):
            raise formats.RowError("`responses` must map questions to lists of responses")
        for question, answers in responses.items():
            if not isinstance(answers, list):
                raise formats.RowError(f"responses to {question!r} must be a list")
            span = types.get(question) == "span" or question == argilla.STEP_QUESTION
            for answer in answers:
                if not isinstance(answer, dict) or "value" not in answer:
                    raise formats.RowError(f"a response to {question!r} needs a `value`")
                if answer.get("status") == "discarded":
                    continue
                user = users.get(str(answer.get("user_id")))
                if not user:
                    row.unknown_users += 1
                    continue
                if span:
                    row.step_entries[user] = _spans(answer["value"], row.reasoning, question)
                else:
                    row.labels.setdefault(user, {})[question] = answer["value"]
        return row
    except formats.RowError as exc:
        raise formats.RowError(where + str(exc)) from None


def _spans(value, reasoning: str, question: str) -> list[dict]:
    """A span answer over the reasoning → step verdicts keyed by the text of each span."""
    if not isinstance(value, list):
        raise formats.RowError(f"a response to {question!r} must be a list of spans")
    entries = []
    for span in sorted((s for s in value if isinstance(s, dict)), key=lambda s: s.get("start", 0)):
        start, end, label = span.get("start"), span.get("end"), span.get("label")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(reasoning)):
            raise formats.RowError(f"a span of {question!r} is outside the reasoning")
        if label not in step_rules.LABELS:
            raise formats.RowError(f"a span of {question!r} is labelled {label!r}, not one of {', '.join(step_rules.LABELS)}")
        entries.append({"h": step_rules.step_hash(reasoning[start:end].strip()), "label": label, "note": ""})
    if len(entries) != len(value):
        raise formats.RowError(f"a response to {question!r} must be a list of spans")
    return entries
