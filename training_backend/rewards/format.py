"""Format rewards: is the completion `<think>…</think><answer>…</answer>`?

`format_reward` is R1's rule format reward: all or nothing. `tag_count_reward` is open-r1's
partial credit (0.25 per tag), a denser signal for a base model that has not found the format.

Departures from open-r1: both are whitespace tolerant (open-r1 demands `<think>\\n` and
`\\n</think>\\n<answer>\\n`), because R1's template puts the tags inline and the tiny model writes
them with spaces. Neither checks that the spans are non-empty (as in open-r1): emptiness is for
the accuracy and length rewards to punish. A completion whose prompt pre-filled `<think>` must
be scored with that tag put back in front (the trainer does this), or it never has the format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training_backend.rewards.parsing import as_text

# Span contents may not contain any of the four tags: `<answer>a</answer><answer>b</answer>`
# or a think span with a stray `<answer>` inside is not the format.
_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"
_FORMAT_RE = re.compile(rf"\s*<think>{_NO_TAG}</think>\s*<answer>{_NO_TAG}</answer>\s*", re.DOTALL)
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def format_reward(completion: str) -> float:
    """1.0 iff the whole completion is `<think>…</think>` then `<answer>…</answer>`, else 0.0."""
    return 1.0 if _FORMAT_RE.fullmatch(as_text(completion)) else 0.0


def tag_count_reward(completion: str) -> float:
    """0.25 for each of the four tags that appears exactly once (open-r1's tag_count_reward)."""
    text = as_text(completion)
    return sum((0.25 for tag in TAGS if text.count(tag) == 1), 0.0)


def format_rewards(completions: Sequence[object], **_columns: object) -> list[float | None]:
    """Batch form; reads no column."""
    return [format_reward(c) for c in completions]


def tag_count_rewards(completions: Sequence[object], **_columns: object) -> list[float | None]:
    """Batch form; reads no column."""
    return [tag_count_reward(c) for c in completions]
