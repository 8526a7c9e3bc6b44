"""Reward functions: pure, deterministic, never raising on model output; no torch.

Two forms of each reward:
- single-item, for the web UI's checks and for tests: `accuracy_reward(completion, gold)`, …;
- batch, TRL's contract, `fn(completions: list[str], **columns) -> list[float | None]`, in
  `REWARD_FUNCS` under the names stage configs use. Columns are the dataset's, one value per row;
  keyword scalars (`max_len`, `ngram_size`, `timeout_s`, …) are settings. None = does not apply.

| name                 | reads column(s)                                   | range        |
|----------------------|---------------------------------------------------|--------------|
| accuracy             | gold, else answer, else solution                  | {0, 1}       |
| format               | -                                                 | {0, 1}       |
| tag_count            | -                                                 | {0, .25, …1} |
| language_consistency | target_lang (one code, or one per row)            | [0, 1]       |
| code                 | tests (list of snippets per row); only in a full  | [0, 1]       |
|                      | sandbox unless opted out (rewards.sandbox)        |              |
| overlong             | completion_lengths (tokens; chars if absent)      | [-1, 0]      |
| cosine               | correct, else the gold columns; completion_lengths| [-1, 1]      |
| repetition           | -                                                 | [-1, 0]      |
| reward_model         | prompts, type; reward_model_path (a setting)      | model score  |

`combine_rewards` sums them with the stage config's weights; None counts as 0 in that sum
(TRL's nansum) and is left out of that function's mean (`reward_means`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from training_backend.rewards.accuracy import accuracy_reward, accuracy_rewards, answers_equivalent, clear_caches
from training_backend.rewards.format import format_reward, format_rewards, tag_count_reward, tag_count_rewards
from training_backend.rewards.language import language_consistency_reward, language_consistency_rewards
from training_backend.rewards.length import cosine_length_reward, cosine_length_rewards, overlong_penalties, overlong_penalty
from training_backend.rewards.math_pool import set_math_workers, warm_up
from training_backend.rewards.parsing import as_text, extract_answer, extract_code, extract_think, last_boxed
from training_backend.rewards.repetition import repetition_penalty_reward, repetition_penalty_rewards
from training_backend.rewards.sandbox import (
    Isolation,
    SandboxRefused,
    SandboxResult,
    code_reward,
    code_rewards,
    require_isolation,
    run_sandboxed,
    sandbox_capabilities,
    sandbox_isolation,
    set_unsandboxed_allowed,
)

BatchRewardFn = Callable[..., list[float | None]]


class UnknownRewardError(KeyError):
    """A reward name that is not in REWARD_FUNCS; the message lists the known ones."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        super().__init__(
            f"unknown reward function(s) {', '.join(map(repr, self.names))}; known: {', '.join(sorted(REWARD_FUNCS))}"
        )

    def __str__(self) -> str:  # KeyError would show the message quoted
        return self.args[0]


def _reward_model_rewards(completions, **columns):
    """A trained reward model's scores (training_backend.reward_model; torch is imported on first use)."""
    from training_backend.reward_model import reward_model_rewards

    return reward_model_rewards(completions, **columns)


class _Registry(dict):
    def __missing__(self, name: str) -> BatchRewardFn:
        raise UnknownRewardError([name])


REWARD_FUNCS: dict[str, BatchRewardFn] = _Registry(
    accuracy=accuracy_rewards,
    format=format_rewards,
    tag_count=tag_count_rewards,
    language_consistency=language_consistency_rewards,
    code=code_rewards,
    overlong=overlong_penalties,
    cosine=cosine_length_rewards,
    repetition=repetition_penalty_rewards,
    reward_model=_reward_model_rewards,
)


def get_reward_funcs(names: Iterable[str]) -> dict[str, BatchRewardFn]:
    """The batch functions for `names`, in order; UnknownRewardError naming every unknown one."""
    names = list(names)
    unknown = [n for n in names if n not in REWARD_FUNCS]
    if unknown:
        raise UnknownRewardError(unknown)
    return {n: REWARD_FUNCS[n] for n in names}


def combine_rewards(per_fn: Mapping[str, Sequence[float | None]], weights: Mapping[str, float]) -> list[float]:
    """Per-completion total: sum of weight * reward; None counts as 0 (TRL's nansum).

    Every function in `per_fn` needs a weight (a forgotten weight is a config bug, not a 1.0),
    and every weight must name a function in `per_fn`; all lists must be equally long.
    """
    missing = set(per_fn) - set(weights)
    extra = set(weights) - set(per_fn)
    if missing or extra:
        raise ValueError(f"weights and rewards differ: no weight for {sorted(missing)}, no rewards for {sorted(extra)}")
    lengths = {name: len(values) for name, values in per_fn.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"reward lists of different lengths: {lengths}")
    n = next(iter(lengths.values()), 0)
    totals = [0.0] * n
    for name, values in per_fn.items():
        w = weights[name]
        for i, r in enumerate(values):
            if r is not None:
                totals[i] += w * r
    return totals


def reward_means(per_fn: Mapping[str, Sequence[float | None]]) -> dict[str, float | None]:
    """Each function's mean over the rows it applies to (None excluded); None if it applied to none."""
    means: dict[str, float | None] = {}
    for name, values in per_fn.items():
        applied = [r for r in values if r is not None]
        means[name] = sum(applied) / len(applied) if applied else None
    return means


__all__ = [
    "REWARD_FUNCS",
    "Isolation",
    "SandboxRefused",
    "SandboxResult",
    "UnknownRewardError",
    "accuracy_reward",
    "accuracy_rewards",
    "answers_equivalent",
    "as_text",
    "clear_caches",
    "code_reward",
    "code_rewards",
    "combine_rewards",
    "cosine_length_reward",
    "cosine_length_rewards",
    "extract_answer",
    "extract_code",
    "extract_think",
    "format_reward",
    "format_rewards",
    "get_reward_funcs",
    "language_consistency_reward",
    "language_consistency_rewards",
    "last_boxed",
    "overlong_penalties",
    "overlong_penalty",
    "repetition_penalty_reward",
    "repetition_penalty_rewards",
    "require_isolation",
    "reward_means",
    "run_sandboxed",
    "sandbox_capabilities",
    "sandbox_isolation",
    "set_math_workers",
    "set_unsandboxed_allowed",
    "warm_up",
]
