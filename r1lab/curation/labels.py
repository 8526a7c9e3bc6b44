"""A project's label set (its questions) and the cleaning of one annotator's answers. Pure."""
from __future__ import annotations

import json
import re

from django.core.exceptions import ValidationError

TYPES = ("scale", "bool", "choice", "text")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_TEXT = 5000


def schema_validate(schema) -> list[dict]:
    """A clean copy of `schema`, or ValidationError naming every problem (nothing is half-applied)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"The label set is not valid JSON: {exc.msg} (line {exc.lineno}).") from exc
    if not isinstance(schema, list) or not schema:
        raise ValidationError("The label set must be a non-empty JSON list of questions.")
    problems, clean, seen = [], [], set()
    for i, q in enumerate(schema, start=1):
        if not isinstance(q, dict):
            problems.append(f"question {i}: must be an object")
            continue
        key, qtype = q.get("key"), q.get("type")
        if not isinstance(key, str) or not KEY_RE.match(key):
            problems.append(f"question {i}: key must be lowercase letters, digits and _ (got {key!r})")
            continue
        if key in seen:
            problems.append(f"question {i}: duplicate key {key!r}")
        seen.add(key)
        if qtype not in TYPES:
            problems.append(f"question {i} ({key}): type must be one of {', '.join(TYPES)}")
            continue
        item = {"key": key, "question": str(q.get("question") or key)[:200], "type": qtype}
        if qtype == "scale":
            lo, hi = q.get("min", 1), q.get("max", 5)
            if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi and hi - lo <= 20):
                problems.append(f"question {i} ({key}): a scale needs integer min < max (at most 21 steps)")
            item.update(min=lo, max=hi)
        if qtype == "choice":
            choices = q.get("choices")
            if not (isinstance(choices, list) and 2 <= len(choices) <= 30 and all(isinstance(c, str) and c for c in choices)):
                problems.append(f"question {i} ({key}): a choice needs a list of 2-30 non-empty strings")
            item["choices"] = choices
        clean.append(item)
    if problems:
        raise ValidationError(problems)
    return clean


def values_clean(schema: list[dict], raw: dict[str, str]) -> dict:
    """Answers from a form (strings; missing = unanswered) cleaned against the schema."""
    out, problems = {}, []
    for q in schema:
        key = q["key"]
        value = raw.get(key)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        if q["type"] == "scale":
            try:
                number = int(value)
            except (TypeError, ValueError):
                problems.append(f"{q['question']}: not a number")
                continue
            if not q["min"] <= number <= q["max"]:
                problems.append(f"{q['question']}: must be {q['min']}–{q['max']}")
                continue
            out[key] = number
        elif q["type"] == "bool":
            if value in (True, "yes", "true", "1", "on"):
                out[key] = True
            elif value in (False, "no", "false", "0"):
                out[key] = False
            else:
                problems.append(f"{q['question']}: answer yes or no")
        elif q["type"] == "choice":
            if value not in q["choices"]:
                problems.append(f"{q['question']}: not one of the choices")
            else:
                out[key] = value
        else:
            out[key] = str(value)[:MAX_TEXT]
    if problems:
        raise ValidationError(problems)
    return out


def value_for_filter(schema: list[dict], key: str, raw: str):
    """The typed JSON value to filter labels by (None if the key is unknown or the value invalid)."""
    q = next((q for q in schema if q["key"] == key), None)
    if q is None or q["type"] == "text":
        return None
    try:
        cleaned = values_clean([q], {key: raw})
    except ValidationError:
        return None
    return cleaned.get(key)


def value_fits(question: dict, value) -> bool:
    """Whether a stored answer is still a valid answer to `question` (the label set may have changed
    since it was given): what a frozen version keeps, typed for its exports."""
    if question["type"] == "scale":
        return isinstance(value, int) and not isinstance(value, bool) and question["min"] <= value <= question["max"]
    if question["type"] == "bool":
        return isinstance(value, bool)
    if question["type"] == "choice":
        return isinstance(value, str) and value in question["choices"]
    return isinstance(value, str)
