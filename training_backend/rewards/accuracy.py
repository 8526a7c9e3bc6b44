"""Accuracy reward: 1.0 when the completion's final answer equals the gold mathematically.

The verdict is math-verify's (`parse` + `verify`, strict mode) on two prepared strings; three
layers in front of it make it cheap enough for a GRPO loop, and one behind it makes it safe:

1. preparation: the answer is `extract_answer` (last `<answer>` span, else last `\\boxed{}`),
   and both strings are made readable to math-verify (`math_equivalence.prepare`).
2. a fast path for plain numbers, decided without math-verify, and close numbers decided by
   sympy's own rule in this process (`math_equivalence`).
3. a bounded LRU cache of verdicts keyed by (gold, answer), here: the G completions of a prompt
   repeat answers, and so do epochs.
4. the rest runs in a small pool of persistent child processes, each request with a deadline
   (`math_pool`): a pair that times out scores 0.0, and that verdict is cached too.

Departures from math-verify's defaults: answers longer than `MAX_ANSWER_CHARS` (100k characters)
score 0.0 without parsing, which bounds what a worker is sent.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from training_backend.rewards.math_equivalence import close_numbers, close_numbers_verdict, fast_verdict, prepare
from training_backend.rewards.math_pool import clear_parse_caches, sympy_verdicts
from training_backend.rewards.parsing import as_text, extract_answer

DEFAULT_TIMEOUT_S = 3.0  # per (gold, answer) pair on the sympy path
MAX_ANSWER_CHARS = 100_000  # math-verify only regex-scans long text, so this is generous
CACHE_SIZE = 65_536  # verdicts; a key is two short strings, so this is a few MB at most


# --- the verdict cache ----------------------------------------------------------------------


class _VerdictCache:
    """A thread-safe LRU of (gold, answer) -> verdict."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._data: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bool | None:
        with self._lock:
            verdict = self._data.get(key)
            if verdict is not None:
                self._data.move_to_end(key)
            return verdict

    def put(self, key: tuple[str, str], verdict: bool) -> None:
        with self._lock:
            self._data[key] = verdict
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_cache = _VerdictCache(CACHE_SIZE)


def clear_caches() -> None:
    """Forget every verdict and every parse, keeping the started workers (benchmarks; tests)."""
    _cache.clear()
    clear_parse_caches()


# --- the reward -------------------------------------------------------------------------------


def _key(gold: object, answer: str | None) -> tuple[str, str] | None:
    """The prepared (gold, answer) pair, or None when the answer scores 0 without looking."""
    if answer is None or len(answer) > MAX_ANSWER_CHARS:
        return None
    return prepare(as_text(gold)), prepare(answer)


def _verdicts(keys: Sequence[tuple[str, str] | None], timeout_s: float) -> list[bool]:
    """Verdicts for prepared pairs: fast path, cache, then the sympy pool in parallel."""
    verdicts: list[bool | None] = []
    pending: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        verdict = None if key is None else fast_verdict(*key)
        if key is None:
            verdict = False
        elif verdict is None:
            verdict = _cache.get(key)
        if verdict is None:
            pending.setdefault(key, []).append(i)
        verdicts.append(verdict)
    if pending:
        # Close plain numbers are this thread's own share (sympy, ~1 ms a pair), done while the
        # workers parse the rest: no pipe, no parse, and on an otherwise idle thread.
        close = [key for key in pending if close_numbers(*key) is not None]
        rest = [key for key in pending if close_numbers(*key) is None]
        own = lambda: {key: bool(close_numbers_verdict(*key)) for key in close}  # noqa: E731
        for key, verdict in sympy_verdicts(rest, timeout_s, meanwhile=own).items():
            _cache.put(key, verdict)  # timeouts too: a hanging answer must not hang each epoch
            for i in pending[key]:
                verdicts[i] = verdict
    return [bool(v) for v in verdicts]


def accuracy_reward(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 when the completion's final answer is mathematically equivalent to `gold`, else 0.0."""
    return float(_verdicts([_key(gold, extract_answer(completion))], timeout_s)[0])


def answers_equivalent(gold: str, answer: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Is a bare `answer` string equivalent to `gold`? (cons@k voting, curation checks)."""
    return _verdicts([_key(gold, as_text(answer))], timeout_s)[0]


def accuracy_rewards(
    completions: Sequence[object],
    *,
    gold: Sequence[object] | None = None,
    answer: Sequence[object] | None = None,
    solution: Sequence[object] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **_columns: object,
) -> list[float | None]:
    """Batch form. Reads the gold from the first column present of `gold`, `answer`, `solution`
    (TRL datasets use all three names); None for rows whose gold is None."""
    golds = next((col for col in (gold, answer, solution) if col is not None), None)
    if golds is None:
        return [None] * len(completions)
    keys = [None if g is None else _key(g, extract_answer(c)) for c, g in zip(completions, golds, strict=True)]
    verdicts = _verdicts(keys, timeout_s)
    return [None if g is None else float(v) for g, v in zip(golds, verdicts)]
