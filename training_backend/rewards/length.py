"""Length-shaping rewards: DAPO's soft overlong punishment and the cosine length scaling of
Yeo et al. 2025 ("Demystifying Long Chain-of-Thought Reasoning in LLMs").

Lengths are whatever unit the caller counts in: the trainer passes token counts in the
`completion_lengths` column; without it the batch forms fall back to characters, which keeps
the web UI's checks torch-free (no tokenizer) but is only a proxy.

Departures: the cosine reward clamps the length to `max_len` (open-r1 lets cos() swing back up
past it; the paper adds a separate exceed penalty, which is what `overlong` is for), and its
defaults are open-r1's (±0.5…1.0) rather than the paper's (+2/+1 correct, -10/0 wrong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from training_backend.rewards.accuracy import DEFAULT_TIMEOUT_S, accuracy_rewards
from training_backend.rewards.parsing import as_text


def overlong_penalty(length: int, *, max_len: int, cache_len: int) -> float:
    """DAPO eq. 13: 0 up to max_len - cache_len, then linearly down to -1 at max_len, -1 beyond."""
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"need 0 <= cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    free = max_len - cache_len
    if length <= free:
        return 0.0
    if length <= max_len:
        return (free - length) / cache_len
    return -1.0


def cosine_length_reward(
    *,
    is_correct: bool,
    length: int,
    max_len: int,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
) -> float:
    """Cosine-scaled correctness: short correct answers earn most (max_value_correct at length 0,
    min_value_correct at max_len); wrong ones are punished least when long (min_value_wrong at
    length 0 rising to max_value_wrong at max_len), so the model thinks longer when it is wrong."""
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    progress = min(max(length, 0), max_len) / max_len
    cosine = math.cos(progress * math.pi)  # 1 at length 0, -1 at max_len
    if is_correct:
        lo, hi = min_value_correct, max_value_correct
    else:
        lo, hi = max_value_wrong, min_value_wrong  # swapped: the wrong reward rises with length
    return lo + 0.5 * (hi - lo) * (1.0 + cosine)


def _lengths(completions: Sequence[object], completion_lengths: Sequence[int] | None) -> list[int]:
    if completion_lengths is None:
        return [len(as_text(c)) for c in completions]
    if len(completion_lengths) != len(completions):
        raise ValueError(f"{len(completion_lengths)} completion_lengths for {len(completions)} completions")
    return [int(n) for n in completion_lengths]


def overlong_penalties(
    completions: Sequence[object],
    *,
    completion_lengths: Sequence[int] | None = None,
    max_len: int = 4096,
    cache_len: int = 512,
    **_columns: object,
) -> list[float | None]:
    """Batch form. Reads `completion_lengths` (tokens; characters when absent); `max_len` and
    `cache_len` are settings (keyword scalars), not columns."""
    return [overlong_penalty(n, max_len=max_len, cache_len=cache_len) for n in _lengths(completions, completion_lengths)]


def cosine_length_rewards(
    completions: Sequence[object],
    *,
    completion_lengths: Sequence[int] | None = None,
    correct: Sequence[bool | None] | None = None,
    max_len: int = 4096,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **columns: object,
) -> list[float | None]:
    """Batch form. Correctness comes from the `correct` column when given, else from the
    accuracy reward on the gold column (`gold`/`answer`/`solution`, cached, so scoring both
    costs one sympy pass); None for rows with neither. Lengths as in `overlong_penalties`."""
    if correct is None:
        acc = accuracy_rewards(completions, timeout_s=timeout_s, **columns)
        correct = [None if r is None else r == 1.0 for r in acc]
    lengths = _lengths(completions, completion_lengths)
    return [
        None
        if ok is None
        else cosine_length_reward(
            is_correct=bool(ok),
            length=n,
            max_len=max_len,
            min_value_correct=min_value_correct,
            max_value_correct=max_value_correct,
            min_value_wrong=min_value_wrong,
            max_value_wrong=max_value_wrong,
        )
        for ok, n in zip(correct, lengths, strict=True)
    ]
