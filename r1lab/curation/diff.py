"""Word-level diff between two texts, as a list of (op, text) segments for the templates.

Tokens are words *and* the whitespace between them, so that joining the "equal" + "insert"
segments gives back the new text exactly and "equal" + "delete" the old one. The templates
render each segment escaped, in a <span>, <ins> or <del>: never as HTML.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class Segment:
    op: str  # "equal" | "insert" | "delete"
    text: str


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text or "")


def word_diff(old: str, new: str) -> list[Segment]:
    a, b = tokens(old), tokens(new)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    out: list[Segment] = []

    def emit(op: str, parts: list[str]) -> None:
        text = "".join(parts)
        if not text:
            return
        if out and out[-1].op == op:
            out[-1] = Segment(op, out[-1].text + text)
        else:
            out.append(Segment(op, text))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            emit("equal", a[i1:i2])
        else:
            if i2 > i1:
                emit("delete", a[i1:i2])
            if j2 > j1:
                emit("insert", b[j1:j2])
    return out


def diff_stats(segments: list[Segment]) -> dict:
    words = lambda s: len([t for t in tokens(s.text) if not t.isspace()])  # noqa: E731
    return {
        "inserted": sum(words(s) for s in segments if s.op == "insert"),
        "deleted": sum(words(s) for s in segments if s.op == "delete"),
    }
