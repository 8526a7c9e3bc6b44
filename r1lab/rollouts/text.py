"""Model text cut into segments for display: the think span, the answer span, the tags, and the
reflection markers inside the think span. Pure Python; the template prints each segment
escaped (`{{ text }}`), so a completion holding `<script>` shows as text, never runs.
"""
from __future__ import annotations

from typing import NamedTuple

from training_backend.reflection import reflection_spans

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


class Segment(NamedTuple):
    cls: str  # css class: "tag", "think", "answer", "other", each + " refl" for a reflection marker
    text: str


def _zones(text: str) -> list[tuple[int, int, str]]:
    """(start, end, zone) covering `text` in order, zone in tag / think / answer / other."""
    zones: list[tuple[int, int, str]] = []
    pos = 0

    def add(start: int, end: int, zone: str) -> None:
        if end > start:
            zones.append((start, end, zone))

    t_open = text.find(THINK_OPEN)
    t_close = text.find(THINK_CLOSE, t_open + len(THINK_OPEN) if t_open >= 0 else 0)
    if t_open >= 0:
        add(0, t_open, "other")
        add(t_open, t_open + len(THINK_OPEN), "tag")
        end = t_close if t_close >= 0 else len(text)
        add(t_open + len(THINK_OPEN), end, "think")
        pos = end
    elif t_close >= 0:  # R1-Zero's template opens <think> in the prompt: the completion starts inside it
        add(0, t_close, "think")
        pos = t_close
    if t_close >= 0 and pos == t_close:
        add(t_close, t_close + len(THINK_CLOSE), "tag")
        pos = t_close + len(THINK_CLOSE)
    a_open = text.find(ANSWER_OPEN, pos)
    if a_open >= 0:
        a_close = text.find(ANSWER_CLOSE, a_open + len(ANSWER_OPEN))
        add(pos, a_open, "other")
        add(a_open, a_open + len(ANSWER_OPEN), "tag")
        end = a_close if a_close >= 0 else len(text)
        add(a_open + len(ANSWER_OPEN), end, "answer")
        pos = end
        if a_close >= 0:
            add(a_close, a_close + len(ANSWER_CLOSE), "tag")
            pos = a_close + len(ANSWER_CLOSE)
    add(pos, len(text), "other")
    return zones


def segments(text: str, expected: int | None = None) -> list[Segment]:
    """The completion as display segments; reflection markers (training_backend.reflection) split
    their zone and add " refl". Concatenating the texts gives back `text` exactly. `expected`:
    how many markers ingest counted (0 skips the search)."""
    refl = reflection_spans(text, expected)
    if not refl:
        return [Segment(zone, text[start:end]) for start, end, zone in _zones(text)]
    out: list[Segment] = []
    r = 0
    for start, end, zone in _zones(text):
        pos = start
        while r < len(refl) and refl[r][0] < end:
            r_start, r_end = refl[r]
            r_start, r_end = max(r_start, pos), min(r_end, end)
            if r_start > pos:
                out.append(Segment(zone, text[pos:r_start]))
            if r_end > r_start:
                out.append(Segment(zone + " refl", text[r_start:r_end]))
                pos = r_end
            if refl[r][1] <= end:
                r += 1
            else:
                break
        if end > pos:
            out.append(Segment(zone, text[pos:end]))
    return out
