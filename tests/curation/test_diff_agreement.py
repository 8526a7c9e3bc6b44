"""The word diff and the agreement figures, on cases computed by hand."""
import random

import pytest

from r1lab.curation.agreement import (
    cohen_kappa,
    disagreement,
    edit_distance,
    krippendorff_alpha,
    levenshtein,
    nominal_alpha_from_counts,
    pairs_agreeing,
    pairs_agreeing_from_counts,
)
from r1lab.curation.diff import diff_stats, word_diff


def _join(segments, ops):
    return "".join(s.text for s in segments if s.op in ops)


def test_word_diff_marks_words_and_rebuilds_both_texts():
    old = "The answer is 5, so we are done."
    new = "The answer is 4, so we are done. Really."
    segments = word_diff(old, new)
    assert _join(segments, {"equal", "delete"}) == old
    assert _join(segments, {"equal", "insert"}) == new
    assert [s.text for s in segments if s.op == "delete"][0] == "5,"
    assert [s.text for s in segments if s.op == "insert"][0] == "4,"
    assert diff_stats(segments) == {"inserted": 2, "deleted": 1}  # "4," and "Really."; "5,"


def test_word_diff_identical_and_empty():
    assert [s.op for s in word_diff("a b", "a b")] == ["equal"]
    assert [(s.op, s.text) for s in word_diff("", "new text")] == [("insert", "new text")]


def test_cohen_kappa_textbook_case():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; κ = 0.2/0.5 = 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_perfect_and_undefined():
    assert cohen_kappa([(1, 1), (2, 2), (3, 3)]) == pytest.approx(1.0)
    assert cohen_kappa([(1, 1), (1, 1)]) is None  # p_e = 1: undefined
    assert cohen_kappa([]) is None


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4-coder, 12-unit example
# with missing values: nominal α = 0.743, interval α = 0.849.
A = [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None]
B = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3]
C = [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None]
D = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]
UNITS = {u: {"A": A[u], "B": B[u], "C": C[u], "D": D[u]} for u in range(12)}


def test_krippendorff_alpha_published_example():
    assert krippendorff_alpha(UNITS, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(UNITS, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_small_hand_case():
    # Two units, two coders: (1,1) and (1,2), nominal.
    # Coincidences: o11 = 2 (unit 1) ; o12 = o21 = 1 (unit 2); n1 = 3, n2 = 1, n = 4.
    # D_o = (o12 + o21)/n = 2/4 = 0.5; D_e = (n1*n2 + n2*n1)/(n(n-1)) = 6/12 = 0.5; α = 1 - 1 = 0.
    assert krippendorff_alpha({1: {"a": 1, "b": 1}, 2: {"a": 1, "b": 2}}) == pytest.approx(0.0)


def test_alpha_undefined_without_pairs_or_variation():
    assert krippendorff_alpha({1: {"a": 1}}) is None
    assert krippendorff_alpha({1: {"a": 1, "b": 1}, 2: {"a": 1, "b": 1}}) is None


def test_disagreement_spread():
    assert disagreement([1, 5], "scale") == 1.0
    assert disagreement([3, 4], "scale") == 0.25
    assert disagreement([True, True, False], "bool") == pytest.approx(1 / 3)
    assert disagreement([2], "scale") == 0.0


# --- edit agreement (issue 18): normalised word-level edit distance, computed by hand -------------------
@pytest.mark.parametrize("old, new, distance, length", [
    ("the cat sat on the mat", "the cat sat on a mat", 1, 6),  # one substitution
    ("a b c d", "a c d", 1, 4),  # one deletion
    ("a b", "b a", 2, 2),  # no transpositions in Levenshtein: two substitutions
    ("", "", 0, 0),
    ("", "x y", 2, 2),
    ("a  b\nc", "a b c", 0, 3),  # words, not whitespace
    ("We add 2 and 2 to get 5 .", "We add two and two to get 4 .", 3, 9),
])
def test_edit_distance_hand_computed_pairs(old, new, distance, length):
    d = edit_distance(old, new)
    assert (d.distance, d.length, d.unit) == (distance, length, "word")
    assert d.value == pytest.approx(distance / length if length else 0.0)
    assert edit_distance(new, old).distance == distance  # symmetric


def test_levenshtein_matches_the_textbook_cases_and_the_dynamic_programme():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "") == 3
    rng = random.Random(18)

    def table(a, b):  # the O(n·m) dynamic programme the bit-vector version replaces
        prev = list(range(len(b) + 1))
        for i in range(1, len(a) + 1):
            cur = [i] + [0] * len(b)
            for j in range(1, len(b) + 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            prev = cur
        return prev[-1]

    for _ in range(300):  # lengths across the 64-bit word boundary too
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        assert levenshtein(a, b) == table(a, b)


def test_edit_distance_counts_sentences_past_the_work_budget():
    d = edit_distance("One two. Three four. Five six.", "One two. Drei vier. Five six.", word_budget=0)
    assert (d.distance, d.length, d.unit) == (1, 3, "sentence")
    assert d.value == pytest.approx(1 / 3)
    # Common ends are free: a long identical text with one word changed stays a word-level figure.
    long = " ".join(f"w{i}" for i in range(50_000))
    d = edit_distance(long, long.replace("w25000", "changed"))
    assert (d.distance, d.length, d.unit) == (1, 50_000, "word")


def test_pairs_agreeing():
    assert pairs_agreeing({"a": "x", "b": "x", "c": "y"}) == (1, 3)
    assert pairs_agreeing({"a": 1}) == (0, 0)


def test_alpha_and_pairs_from_value_counts_equal_those_from_the_units():
    rng = random.Random(7)
    values = ["c", "i", "n"]
    for _ in range(50):
        units = {u: {coder: rng.choice(values) for coder in rng.sample("abcd", rng.randint(2, 4))} for u in range(rng.randint(1, 30))}
        counts = {}
        for coders in units.values():
            key = tuple(list(coders.values()).count(v) for v in values)
            counts[key] = counts.get(key, 0) + 1
        expected = krippendorff_alpha(units, "nominal")
        got = nominal_alpha_from_counts(counts)
        assert (got is None and expected is None) or got == pytest.approx(expected)
        same = sum(pairs_agreeing(c)[0] for c in units.values())
        pairs = sum(pairs_agreeing(c)[1] for c in units.values())
        assert pairs_agreeing_from_counts(counts) == (same, pairs)
    assert nominal_alpha_from_counts({}) is None
