"""Reflection ("aha moment") statistics: how often completions second-guess themselves.

Markers are the union of the published keyword lists: SimpleRL-Zoo (Zeng et al. 2025: recheck,
rethink, try again, wait, alternatively, retry, however) and oat-zero / understand-r1-zero
(Liu et al. 2025: re-evaluate, re-examine, check again, think again, double-check, reconsider,
…), matched case-insensitively on word boundaries (`wait` counts, `waiting` does not), with the
hyphen optional (`double check`, `reevaluate`).

What is scanned: the `<think>` span, or the whole completion when there is none (a base model
early in R1-Zero training rarely closes its tags, and its reflections still count). Positions
from `find_reflections` are offsets into the full completion, so the UI can highlight them.

Departures: English markers only (R1's aha moment is English; a zh run needs its own list), and
no attempt to tell a reflective "however" from a rhetorical one: the papers count words too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training_backend.rewards.parsing import as_text

REFLECTION_MARKERS = (
    # SimpleRL-Zoo
    "recheck",
    "rethink",
    "try again",
    "wait",
    "alternatively",
    "retry",
    "however",
    # oat-zero / understand-r1-zero additions
    "re-evaluate",
    "re-examine",
    "check again",
    "think again",
    "double-check",
    "reconsider",
    "re-check",  # spelling variant of recheck; the optional hyphen also covers "re check"
)


def _pattern(marker: str) -> str:
    # "double-check" also matches "double check" and "doublecheck"; spaces match any whitespace.
    return r"\s+".join(re.escape(w).replace(r"\-", r"[-\s]?") for w in marker.split())


# Longest first so that "re-check" is not read as a shorter marker; \b on both ends.
_MARKER_RE = re.compile(
    r"\b(?:" + "|".join(_pattern(m) for m in sorted(REFLECTION_MARKERS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


def _scanned_span(text: str) -> tuple[int, int]:
    """(start, end) of the text that is scanned: the think span's content, else everything."""
    open_at = text.find(_THINK_OPEN)
    if open_at >= 0:
        start = open_at + len(_THINK_OPEN)
        close_at = text.find(_THINK_CLOSE, start)
        if close_at >= 0:
            return start, close_at
    return 0, len(text)


def find_reflections(text: str) -> list[tuple[int, int, str]]:
    """(start, end, matched text) of each reflection marker, offsets into `text`."""
    text = as_text(text)
    start, end = _scanned_span(text)
    return [(m.start(), m.end(), m.group()) for m in _MARKER_RE.finditer(text, start, end)]


# The same marker pattern, case-sensitive, run on the lowercased text: 2.5x faster than the
# IGNORECASE original (a rollout step page scans ~300 reflective completions; benchmarks/rollouts.py).
_LOWER_RE = re.compile(_MARKER_RE.pattern)


def reflection_spans(text: str, expected: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each reflection marker, as find_reflections finds them, for display. Fast
    path on the lowercased text; its result is used only when lowercasing kept every offset and it
    finds the `expected` count (the one stored at ingest), else find_reflections'."""
    if not text or expected == 0:
        return []
    low = text.lower()
    if len(low) == len(text):
        start, end = _scanned_span(text)
        found = [(m.start(), m.end()) for m in _LOWER_RE.finditer(low, start, end)]
        if expected is None or len(found) == expected:
            return found
    return [(a, b) for a, b, _ in find_reflections(text)]


def count_reflections(text: str) -> int:
    """Number of reflection markers in the think span (whole text if none)."""
    return len(find_reflections(text))


def reflection_stats(
    completions: Sequence[str], num_tokens: Sequence[int], correct: Sequence[bool] | None = None
) -> dict[str, float]:
    """Per-step metrics over a batch of completions.

    `reflection/rate_per_1k_tokens`: markers per 1000 completion tokens, pooled over the batch
    (total markers / total tokens, so long completions weigh by their length, as a curve of
    "how much of the text is reflection" should); `reflection/frac_responses`: share of
    completions with at least one marker. With `correct`, both again as `/correct` and
    `/incorrect`; a split key is omitted when that subset is empty, and everything is omitted
    for an empty batch (a missing point, not a misleading 0). A subset with 0 tokens has rate 0.
    """
    if len(num_tokens) != len(completions):
        raise ValueError(f"{len(num_tokens)} token counts for {len(completions)} completions")
    if correct is not None and len(correct) != len(completions):
        raise ValueError(f"{len(correct)} correctness flags for {len(completions)} completions")
    counts = [count_reflections(c) for c in completions]

    def metrics(idx: list[int], suffix: str) -> dict[str, float]:
        if not idx:
            return {}
        tokens = sum(num_tokens[i] for i in idx)
        markers = sum(counts[i] for i in idx)
        return {
            f"reflection/rate_per_1k_tokens{suffix}": 1000.0 * markers / tokens if tokens else 0.0,
            f"reflection/frac_responses{suffix}": sum(counts[i] > 0 for i in idx) / len(idx),
        }

    out = metrics(list(range(len(completions))), "")
    if correct is not None:
        out |= metrics([i for i, ok in enumerate(correct) if ok], "/correct")
        out |= metrics([i for i, ok in enumerate(correct) if not ok], "/incorrect")
    return out
