"""A frozen dataset version as Argilla records (issue 18): the folder `rg.Dataset.to_disk()` writes
and `rg.Dataset.from_disk()` reads (Argilla 2.x), and the parsing of such a folder back. Pure, no ORM.

    <name>/.argilla/dataset.json   the dataset: name, guidelines, distribution (overlap = min_submitted)
    <name>/.argilla/settings.json  fields, questions, metadata properties
    <name>/records.json            [record]: {"id", "fields", "metadata", "suggestions", "responses", "vectors"}
    <name>/r1lab_users.json        {Argilla user id: username}: whose responses they are (Argilla ignores it)

Fields: prompt, reasoning, summary, gold_answer (text, markdown). Questions: one per label of the
project's label set (scale → rating, yes/no → label "yes"/"no", choice → label, text → text) and
`step_labels`, a span question on the reasoning with the labels correct / incorrect / neutral: an
annotator's verdict on a step is a span over that step's text. Responses: each annotator's answers,
status "submitted", under a user id derived from the username (uuid5, the same in every export).
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path

from r1lab.curation import steps as step_rules

STEP_QUESTION = "step_labels"
TEXT_FIELDS = ("prompt", "reasoning", "summary", "gold_answer")
RECORDS, SETTINGS, DATASET, USERS = "records.json", ".argilla/settings.json", ".argilla/dataset.json", "r1lab_users.json"
_USER_NAMESPACE = uuid.UUID("6d1f3a4e-18a0-4c5b-9e2f-7a1c2b3d4e5f")


def user_id(username: str) -> str:
    """The Argilla user id standing for an r1lab username (stable across exports)."""
    return str(uuid.uuid5(_USER_NAMESPACE, username))


def _property(name: str, title: str, settings: dict, *, required: bool | None = None, description: str | None = None) -> dict:
    out = {"id": None, "inserted_at": None, "updated_at": None, "name": name, "settings": settings, "title": title,
           "dataset_id": None, "type": settings["type"]}
    if required is not None:
        out.update(required=required, description=description)
    return out


def _options(values) -> list[dict]:
    return [{"value": v} if isinstance(v, int) else {"text": v, "value": v} for v in values]


def settings(*, label_schema: list[dict], guidelines: str, overlap: int) -> dict:
    """settings.json as `rg.Settings.serialize()` writes it."""
    fields = [
        _property(name, name.replace("_", " ").capitalize(), {"type": "text", "use_markdown": True}, required=name in ("prompt", "reasoning"))
        for name in TEXT_FIELDS
    ]
    questions = []
    for q in label_schema:
        if q["type"] == "scale":
            settings_ = {"type": "rating", "options": _options(range(q["min"], q["max"] + 1))}
        elif q["type"] == "bool":
            settings_ = {"type": "label_selection", "options": _options(["yes", "no"]), "visible_options": None}
        elif q["type"] == "choice":
            settings_ = {"type": "label_selection", "options": _options(q["choices"]), "visible_options": None}
        else:
            settings_ = {"type": "text", "use_markdown": False}
        questions.append(_property(q["key"], q["question"], settings_, required=False))
    questions.append(_property(STEP_QUESTION, "Steps: correct, incorrect or neutral", {
        "type": "span", "allow_overlapping": False, "field": "reasoning", "options": _options(step_rules.LABELS), "visible_options": 3,
    }, required=False, description="Select each step of the reasoning and say whether it is correct; the first wrong step is the earliest incorrect one."))
    metadata = [
        {**_property("language", "Language", {"visible_for_annotators": True, "type": "terms", "values": None}), "visible_for_annotators": True},
        {**_property("source", "Source", {"visible_for_annotators": True, "type": "terms", "values": None}), "visible_for_annotators": True},
        {**_property("example_id", "Example id in r1lab", {"visible_for_annotators": True, "min": None, "max": None, "type": "integer"}),
         "visible_for_annotators": True},
    ]
    for m in metadata:
        m.pop("type")  # metadata properties carry their type in settings only
    return {"guidelines": guidelines, "questions": questions, "fields": fields, "vectors": [], "metadata": metadata,
            "allow_extra_metadata": False, "distribution": {"strategy": "overlap", "min_submitted": max(1, overlap)}, "mapping": None}


def dataset(*, name: str, guidelines: str, overlap: int) -> dict:
    """.argilla/dataset.json as `rg.Dataset.to_disk()` writes it (no server ids: this dataset is new to any server)."""
    return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "status": "ready", "guidelines": guidelines,
            "allow_extra_metadata": False, "distribution": {"strategy": "overlap", "min_submitted": max(1, overlap)},
            "workspace_id": None, "last_activity_at": None}


def _answer(q: dict, value):
    if q["type"] == "bool":
        return "yes" if value else "no"
    return value


def record(row: dict, *, label_schema: list[dict]) -> dict:
    """One record (`rg.Record.to_dict()`) from a frozen row (services.version_exports.version_rows)."""
    responses: dict[str, list[dict]] = {}
    for ann in row["labels"]:
        for q in label_schema:
            value = ann["values"].get(q["key"])
            if value is not None:
                responses.setdefault(q["key"], []).append({"value": _answer(q, value), "user_id": user_id(ann["annotator"])})
    spans = row.get("step_spans") or []
    for ann in row["step_annotations"]:
        value = [{"start": s, "end": e, "label": label} for (s, e), label in zip(spans, ann["labels"]) if label]
        if value:
            responses.setdefault(STEP_QUESTION, []).append({"value": value, "user_id": user_id(ann["annotator"])})
    return {
        "id": str(row["id"]), "fields": {name: row[name] for name in TEXT_FIELDS},
        "metadata": {"language": row["language"], "source": row["source"], "example_id": row["id"]},
        "suggestions": {}, "responses": responses, "vectors": {}, "status": "completed" if responses else "pending", "_server_id": None,
    }


def write_folder(path: Path, *, rows: Iterable[dict], label_schema: list[dict], name: str, guidelines: str, overlap: int) -> int:
    """Write the folder at `path` (which must not exist yet); returns the number of records."""
    (path / ".argilla").mkdir(parents=True)
    (path / SETTINGS).write_text(json.dumps(settings(label_schema=label_schema, guidelines=guidelines, overlap=overlap)), encoding="utf-8")
    (path / DATASET).write_text(json.dumps(dataset(name=name, guidelines=guidelines, overlap=overlap)), encoding="utf-8")
    users: dict[str, str] = {}
    count = 0
    with (path / RECORDS).open("w", encoding="utf-8") as fh:  # one JSON list, streamed
        fh.write("[")
        for row in rows:
            for ann in (*row["labels"], *row["step_annotations"]):
                users[user_id(ann["annotator"])] = ann["annotator"]
            fh.write(("," if count else "") + json.dumps(record(row, label_schema=label_schema), ensure_ascii=False))
            count += 1
        fh.write("]")
    (path / USERS).write_text(json.dumps(users, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    return count


# --- reading a folder back (the import) ---------------------------------------------------------------
def looks_like_folder(names: list[str]) -> bool:
    return any(n == RECORDS or n.endswith("/" + RECORDS) for n in names)


def folder_files(files: dict[str, bytes]) -> tuple[bytes, bytes | None, bytes | None]:
    """(records.json, settings.json or None, r1lab_users.json or None) of the folder among `files`
    (at the top of the zip or in one folder inside it)."""
    records = sorted((n for n in files if n == RECORDS or n.endswith("/" + RECORDS)), key=len)[0]
    prefix = records[: -len(RECORDS)]
    return files[records], files.get(prefix + SETTINGS), files.get(prefix + USERS)


def question_types(settings_json: dict | None) -> dict[str, str]:
    """{question name: type} from settings.json ({} without it)."""
    return {q.get("name"): (q.get("settings") or {}).get("type") for q in (settings_json or {}).get("questions", []) if isinstance(q, dict)}
