"""Inter-annotator agreement: pure functions over {unit: {coder: value}}.

- Cohen's κ for exactly two annotators (unweighted, units both labelled).
- Krippendorff's α for more (any number of coders, missing values allowed), with the nominal
  metric for yes/no and choice labels and the interval metric for 1–5 scales.
The formulas follow Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": α = 1 − D_o/D_e
from the coincidence matrix; units with fewer than two values are not pairable and are dropped.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping


def cohen_kappa(pairs: list[tuple[Hashable, Hashable]]) -> float | None:
    """κ = (p_o − p_e) / (1 − p_e) over (rater1, rater2) pairs; None when undefined (no pairs, p_e = 1)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _nominal(a, b) -> float:
    return 0.0 if a == b else 1.0


def _interval(a, b) -> float:
    return (float(a) - float(b)) ** 2


METRICS = {"nominal": _nominal, "interval": _interval}


def krippendorff_alpha(units: Mapping[Hashable, Mapping[Hashable, Hashable]], metric: str = "nominal") -> float | None:
    """α over units → {coder: value}; None when there is no pairable unit or no variation at all."""
    delta = METRICS[metric]
    # Coincidence matrix o[c][k]: each ordered pair of values within a unit, weighted 1/(m_u − 1).
    coincidences: dict = defaultdict(lambda: defaultdict(float))
    for values_by_coder in units.values():
        values = [v for v in values_by_coder.values() if v is not None]
        m = len(values)
        if m < 2:
            continue
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidences[c][k] += 1.0 / (m - 1)
    if not coincidences:
        return None
    n_c = {c: sum(row.values()) for c, row in coincidences.items()}
    n = sum(n_c.values())
    if n <= 1:
        return None
    d_o = sum(o * delta(c, k) for c, row in coincidences.items() for k, o in row.items()) / n
    values = list(n_c)
    d_e = sum(n_c[c] * n_c[k] * delta(c, k) for c in values for k in values) / (n * (n - 1))
    if d_e == 0:
        return None
    return 1.0 - d_o / d_e


def disagreement(values: list, kind: str, lo: float = 1, hi: float = 5) -> float:
    """How far apart one unit's values are, in [0, 1]: range/(hi−lo) for scales, 1 − mode share otherwise."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return 0.0
    if kind == "scale":
        span = (hi - lo) or 1
        return (max(map(float, values)) - min(map(float, values))) / span
    top = Counter(values).most_common(1)[0][1]
    return 1.0 - top / len(values)
