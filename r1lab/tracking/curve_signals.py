"""What the curves say: the aha moment (a change-point in the reflection rate) and the alarms.

Change-point method: a single change in mean found by least squares (Hinkley 1970; the first
split of binary segmentation): for every split k, the sum of squared deviations of the two
segments around their own means; the best k is kept when it explains enough to beat a
BIC penalty, n·ln(SSE₀/SSE₁) > 3·ln(n) (one location + one extra mean, and some margin), and
the level moves by more than `min_shift` (absolute) — noise never makes an aha moment.
O(n) with prefix sums. Pure Python: runs on the ≤2,000 points a chart holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ChangePoint:
    step: int  # first step of the new level
    before: float  # mean level before
    after: float  # mean level after
    score: float  # n·ln(SSE0/SSE1) − penalty: how clear it is

    def as_dict(self) -> dict:
        return {"step": self.step, "before": self.before, "after": self.after, "score": self.score,
                "method": "least-squares mean shift (Hinkley), BIC-penalised"}


def detect_level_change(steps: list[int], values: list[float], *, min_size: int = 5,
                        min_shift: float = 0.0) -> ChangePoint | None:
    n = len(values)
    if n != len(steps) or n < 2 * min_size:
        return None
    s = [0.0]
    q = [0.0]
    for v in values:
        s.append(s[-1] + v)
        q.append(q[-1] + v * v)
    total_sse = q[n] - s[n] * s[n] / n
    if total_sse <= 1e-12:
        return None
    best_k, best_sse = None, math.inf
    for k in range(min_size, n - min_size + 1):
        left = q[k] - s[k] * s[k] / k
        right = (q[n] - q[k]) - (s[n] - s[k]) ** 2 / (n - k)
        sse = left + right
        if sse < best_sse:
            best_k, best_sse = k, sse
    if best_k is None:
        return None
    best_sse = max(best_sse, 1e-12 * total_sse)
    score = n * math.log(total_sse / best_sse) - 3 * math.log(n)
    before = s[best_k] / best_k
    after = (s[n] - s[best_k]) / (n - best_k)
    if score <= 0 or abs(after - before) <= min_shift:
        return None
    return ChangePoint(step=int(steps[best_k]), before=before, after=after, score=score)


# --- alarms -------------------------------------------------------------------------------------


def _head(values: list[float], frac: float = 0.1, at_least: int = 3) -> float:
    k = max(at_least, int(len(values) * frac))
    head = values[:k]
    return sum(head) / len(head)


def _first_sustained(steps, values, pred, run_len: int = 5):
    streak = 0
    for i, v in enumerate(values):
        streak = streak + 1 if pred(v) else 0
        if streak >= run_len:
            return steps[i - run_len + 1]
    return None


@dataclass(frozen=True)
class Thresholds:
    """When each alarm fires; a project's AlertSettings override them (the notifications page)."""

    entropy_collapse_frac: float = 0.1  # entropy below this share of its start, sustained
    zero_std_frac: float = 0.9  # frac_reward_zero_std at or above this, sustained
    length_rise_frac: float = 0.2  # response length up by more than this share (last third vs the one before)…
    accuracy_flat_abs: float = 0.02  # …while accuracy moves less than this
    language_mixing_rise: float = 0.1  # mixed-language share up (consistency down) by more than this, sustained


DEFAULT_THRESHOLDS = Thresholds()


def alarms(series: dict[str, tuple[list[int], list[float]]], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[dict]:
    """Badges for a run, each with the step where it fired. `series`: key -> (steps, values)."""
    t = thresholds
    out = []
    ent = series.get("entropy")
    if ent and len(ent[1]) >= 10:
        start = _head(ent[1])
        if start > 0:
            step = _first_sustained(ent[0], ent[1], lambda v: v < t.entropy_collapse_frac * start)
            if step is not None:
                out.append({"kind": "entropy_collapse", "step": step,
                            "message": f"entropy collapsed below {t.entropy_collapse_frac:.0%} of its start ({start:.3g})"})
    zs = series.get("frac_reward_zero_std")
    if zs and len(zs[1]) >= 5:
        step = _first_sustained(zs[0], zs[1], lambda v: v >= t.zero_std_frac)
        if step is not None:
            out.append({"kind": "zero_std", "step": step,
                        "message": f"frac_reward_zero_std ≥ {t.zero_std_frac:g}: almost no group carries a learning signal"})
    length = series.get("completions/mean_length")
    acc = series.get("rewards/accuracy/mean")
    if length and acc and len(length[1]) >= 20 and len(acc[1]) >= 20:
        # Compare the last third with the third before it.
        def thirds(vals):
            k = len(vals) // 3
            return sum(vals[-2 * k:-k]) / k, sum(vals[-k:]) / k

        l0, l1 = thirds(length[1])
        a0, a1 = thirds(acc[1])
        if l0 > 0 and (l1 - l0) / l0 > t.length_rise_frac and abs(a1 - a0) < t.accuracy_flat_abs:
            k = len(length[1]) // 3
            out.append({"kind": "length_without_accuracy", "step": length[0][-k],
                        "message": f"response length +{(l1 - l0) / l0:.0%} while accuracy is flat ({a0:.3f} → {a1:.3f})"})
    mixed = series.get("language/mixed_frac")
    lang = series.get("rewards/language_consistency/mean") or series.get("rewards/language/mean")
    if mixed and len(mixed[1]) >= 10:
        start = _head(mixed[1])
        step = _first_sustained(mixed[0], mixed[1], lambda v: v > start + t.language_mixing_rise)
        if step is not None:
            out.append({"kind": "language_mixing", "step": step, "message": "language mixing is rising"})
    elif lang and len(lang[1]) >= 10:
        start = _head(lang[1])
        step = _first_sustained(lang[0], lang[1], lambda v: v < start - t.language_mixing_rise)
        if step is not None:
            out.append({"kind": "language_mixing", "step": step,
                        "message": f"language consistency fell from {start:.2f}: language mixing is rising"})
    return out
