"""Inter-annotator agreement: pure functions over {unit: {coder: value}}, and over edited texts.

- Cohen's κ for exactly two annotators (unweighted, units both labelled).
- Krippendorff's α for more (any number of coders, missing values allowed), with the nominal
  metric for yes/no and choice labels and the interval metric for 1–5 scales.
The formulas follow Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": α = 1 − D_o/D_e
from the coincidence matrix; units with fewer than two values are not pairable and are dropped.
- Edits (issue 18): the normalised word-level edit distance between two versions of a trace.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass


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


# --- agreement on free text (issue 18): how far apart two edits of a trace are -----------------------
# Word-level Levenshtein distance, normalised by the longer text: 0 = the same words, 1 = nothing in
# common. Computed exactly with Hyyrö's bit-vector algorithm (one pass over the shorter text, the
# longer one as bits of a Python int), so its cost is len(short) × len(long)/64 machine words. Above
# EDIT_WORK_BUDGET of those (two ~16,000-word traces), the same distance is taken over sentences
# and lines (diff.chunks) instead of words, and says so (`unit`): bounded, deterministic, no timer.
EDIT_WORK_BUDGET = 4_000_000


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance (insertions, deletions, substitutions of one item each) between two sequences."""
    if len(a) < len(b):
        a, b = b, a  # a: the longer one, as bits; one pass over b
    m = len(a)
    if not b:
        return m
    peq: dict = {}
    for i, item in enumerate(a):
        peq[item] = peq.get(item, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for item in b:
        eq = peq.get(item, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & mask  # row 0 of the table is 0, 1, 2, …: a carry of 1 into every column
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score


@dataclass(frozen=True)
class EditDistance:
    distance: int  # edits, in `unit`s
    length: int  # the longer text, in `unit`s
    unit: str  # "word", or "sentence" for texts too long to compare word by word
    work: int = 0  # word-level work spent (len(short) × len(long)/64), counted against a caller's budget

    @property
    def value(self) -> float:
        """Normalised: distance / length, 0.0 for two empty texts."""
        return self.distance / self.length if self.length else 0.0


def edit_distance(old: str, new: str, *, word_budget: int = EDIT_WORK_BUDGET) -> EditDistance:
    """Word-level normalised edit distance between two texts (sentence-level above `word_budget`,
    EDIT_WORK_BUDGET at most; a page comparing many texts passes what is left of its own)."""
    from r1lab.curation.diff import chunks

    a, b = (old or "").split(), (new or "").split()
    # Common ends cost nothing and are most of an edited trace.
    pre = 0
    while pre < len(a) and pre < len(b) and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < len(a) - pre and suf < len(b) - pre and a[-1 - suf] == b[-1 - suf]:
        suf += 1
    mid_a, mid_b = a[pre:len(a) - suf], b[pre:len(b) - suf]
    work = min(len(mid_a), len(mid_b)) * (max(len(mid_a), len(mid_b)) // 64 + 1)
    if work <= min(word_budget, EDIT_WORK_BUDGET):
        return EditDistance(distance=levenshtein(mid_a, mid_b), length=max(len(a), len(b)), unit="word", work=work)
    ca, cb = [c.strip() for c in chunks(old)], [c.strip() for c in chunks(new)]
    ca, cb = [c for c in ca if c], [c for c in cb if c]
    return EditDistance(distance=levenshtein(ca, cb), length=max(len(ca), len(cb)), unit="sentence")


def pairs_agreeing(values: Mapping[Hashable, Hashable]) -> tuple[int, int]:
    """(pairs of coders that gave the same value, pairs of coders) over one unit's values."""
    items = list(values.values())
    pairs = len(items) * (len(items) - 1) // 2
    same = sum(1 for i in range(len(items)) for j in range(i + 1, len(items)) if items[i] == items[j])
    return same, pairs


def nominal_alpha_from_counts(units: Mapping[tuple[int, ...], int]) -> float | None:
    """Krippendorff's α (nominal) from units given by their value counts: {(n_u1, n_u2, …): how many
    units have exactly these counts}. The same α as krippendorff_alpha(…, "nominal") on the units
    themselves, but a project's 300,000 steps collapse into a few dozen count vectors (the agreement
    page reads them grouped from the database)."""
    if not units:
        return None
    k = len(next(iter(units)))
    o = [[0.0] * k for _ in range(k)]
    for counts, weight in units.items():
        m = sum(counts)
        if m < 2:
            continue
        for a in range(k):
            for b in range(k):
                o[a][b] += weight * counts[a] * (counts[b] - (a == b)) / (m - 1)
    n_c = [sum(row) for row in o]
    n = sum(n_c)
    if n <= 1:
        return None
    d_o = sum(o[a][b] for a in range(k) for b in range(k) if a != b) / n
    d_e = sum(n_c[a] * n_c[b] for a in range(k) for b in range(k) if a != b) / (n * (n - 1))
    if d_e == 0:
        return None
    return 1.0 - d_o / d_e


def pairs_agreeing_from_counts(units: Mapping[tuple[int, ...], int]) -> tuple[int, int]:
    """(pairs of coders that gave the same value, pairs of coders) over units given by their value counts."""
    same = sum(w * sum(c * (c - 1) // 2 for c in counts) for counts, w in units.items())
    pairs = sum(w * (sum(counts) * (sum(counts) - 1) // 2) for counts, w in units.items())
    return same, pairs
