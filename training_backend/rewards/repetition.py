"""N-gram repetition penalty (open-r1's repetition_penalty_reward, after Yeo et al. 2025).

penalty = max_penalty * (1 - distinct n-grams / all n-grams), over the whole completion,
case-folded. Departure from open-r1: words are whitespace-separated runs *and* single CJK
characters, so a Chinese completion is penalised for repeating itself too (open-r1 needs jieba
for that, a dependency we do not take).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training_backend.rewards.parsing import as_text

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def repetition_penalty_reward(completion: str, *, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """In [max_penalty, 0]: 0 when no n-gram repeats; 0 for texts shorter than one n-gram."""
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0 (it is a penalty), got {max_penalty}")
    if ngram_size < 1:
        raise ValueError(f"ngram_size must be >= 1, got {ngram_size}")
    words = _TOKEN.findall(as_text(completion).lower())
    total = len(words) - ngram_size + 1
    if total <= 0:
        return 0.0
    distinct = len({tuple(words[i : i + ngram_size]) for i in range(total)})
    return (1.0 - distinct / total) * max_penalty


def repetition_penalty_rewards(
    completions: Sequence[object], *, ngram_size: int = 3, max_penalty: float = -1.0, **_columns: object
) -> list[float | None]:
    """Batch form; reads no column (`ngram_size`, `max_penalty` are settings)."""
    return [repetition_penalty_reward(c, ngram_size=ngram_size, max_penalty=max_penalty) for c in completions]
