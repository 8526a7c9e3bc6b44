"""Step split rules, verdicts keyed by step text, the first wrong step, consensus and the stepwise
row (issue 18). Pure: no database."""
import pytest

from r1lab.curation.steps import (
    MAX_STEPS,
    consensus,
    entries_from,
    first_wrong_step,
    map_entries,
    split_steps,
    stepwise_row,
)

TRACE = (
    "We need 12 × 1.5. First, note that 1.5 = 3/2, e.g. half again.\n\n"
    "So 12 × 3/2 = 36/2 = 18! Is that right? Check: $12 \\times 1.5 = 18.0$. Yes.\n\n"
    "The answer is 18."
)


def texts(text, rule):
    return split_steps(text, rule).texts


def test_paragraphs_cut_at_blank_lines_only():
    assert texts(TRACE, "paragraphs") == [
        "We need 12 × 1.5. First, note that 1.5 = 3/2, e.g. half again.",
        "So 12 × 3/2 = 36/2 = 18! Is that right? Check: $12 \\times 1.5 = 18.0$. Yes.",
        "The answer is 18.",
    ]
    # Whitespace-only lines count as blank; a single newline does not cut.
    assert texts("a\nb\n  \t\n\nc", "paragraphs") == ["a\nb", "c"]


def test_lines_cut_every_line_and_drop_empty_ones():
    assert texts("one\n\ntwo\n   \nthree  ", "lines") == ["one", "two", "three"]


def test_sentences_skip_decimals_abbreviations_markers_and_math():
    assert texts(TRACE, "sentences") == [
        "We need 12 × 1.5.",  # "1.5" is a number, not a sentence end
        "First, note that 1.5 = 3/2, e.g. half again.",  # "e.g." is not a sentence end
        "So 12 × 3/2 = 36/2 = 18!",
        "Is that right?",
        "Check: $12 \\times 1.5 = 18.0$.",  # nothing inside $…$ cuts
        "Yes.",
        "The answer is 18.",
    ]
    # A list marker opening a line is not a sentence; CJK end marks cut without a space.
    assert texts("1. Add them. Then halve.\n2) 所以答案是九。对吗？对", "sentences") == [
        "1. Add them.", "Then halve.", "2) 所以答案是九。", "对吗？", "对",
    ]
    assert texts("Step 1. Add. Done.", "sentences") == ["Step 1. Add.", "Done."]


def test_numbered_steps_start_at_numbered_lines():
    text = "Plan first.\nStep 1: add 2 and 3.\nthat gives 5\n**Step 2.** double it\n## Step 3 - check\n1. also this\n2) and this"
    assert texts(text, "numbered") == [
        "Plan first.", "Step 1: add 2 and 3.\nthat gives 5", "**Step 2.** double it", "## Step 3 - check", "1. also this", "2) and this",
    ]
    # "3.5 apples" is not a numbered line (the number is not followed by a space after the mark).
    assert texts("3.5 apples\nand more", "numbered") == ["3.5 apples\nand more"]
    # No numbered line at all: paragraphs, and the split says so.
    split = split_steps("a\n\nb", "numbered")
    assert (split.texts, split.used) == (["a", "b"], "paragraphs")


def test_auto_prefers_numbers_then_paragraphs_then_sentences():
    assert split_steps("1. a\n2. b", "auto").used == "numbered"
    assert split_steps("x\n\ny", "auto").used == "paragraphs"
    split = split_steps("One. Two.", "auto")
    assert (split.used, split.texts) == ("sentences", ["One.", "Two."])
    assert split_steps("", "auto").steps == []
    with pytest.raises(ValueError):
        split_steps("x", "words")


def test_spans_point_into_the_text_and_long_texts_are_capped():
    split = split_steps("  first step\n\n\tsecond  \n\n", "paragraphs")
    for step in split.steps:
        assert "  first step\n\n\tsecond  \n\n"[step.start:step.end] == step.text
    many = "\n\n".join(f"s{i}" for i in range(MAX_STEPS + 50))
    capped = split_steps(many, "paragraphs")
    assert len(capped.steps) == MAX_STEPS
    assert capped.steps[-1].text.startswith(f"s{MAX_STEPS - 1}\n\n") and capped.steps[-1].text.endswith(f"s{MAX_STEPS + 49}")


def test_digest_changes_with_the_steps_or_the_rule():
    a = split_steps("a\n\nb", "paragraphs")
    assert a.digest == split_steps("a\n\nb", "paragraphs").digest
    assert a.digest != split_steps("a\n\nc", "paragraphs").digest
    assert a.digest != split_steps("a\n\nb", "lines").digest


def test_verdicts_follow_their_step_through_edits_of_the_others():
    before = split_steps("A.\n\nB.\n\nC.\n\nB.", "paragraphs")
    entries = entries_from(before, {0: "correct", 1: "incorrect", 2: "neutral", 3: "correct"}, {1: "sign error"})
    # Step C rewritten, a step inserted at the top: A and both B's keep their verdicts, C's is stale.
    after = split_steps("New.\n\nA.\n\nB.\n\nC2.\n\nB.", "paragraphs")
    mapped = map_entries(after.hashes, entries)
    assert mapped.labels == ["", "correct", "incorrect", "", "correct"]
    assert mapped.notes == ["", "", "sign error", "", ""]
    assert mapped.stale == 1


def test_first_wrong_step_needs_every_step_before_it_labelled():
    assert first_wrong_step(["correct", "neutral", "incorrect", ""]) == 2
    assert first_wrong_step(["correct", "", "incorrect"]) is None  # step 2 could be the first mistake
    assert first_wrong_step(["correct", "neutral"]) == -1  # all labelled, none wrong
    assert first_wrong_step(["correct", ""]) is None
    assert first_wrong_step([]) is None


def test_consensus_is_the_majority_and_a_tie_is_unresolved_unless_no_one_saw_a_mistake():
    assert consensus([["correct", "incorrect", ""], ["correct", "correct", ""], ["neutral", "incorrect", "correct"]]) == [
        "correct", "incorrect", "correct"]
    assert consensus([["correct"], ["incorrect"]]) == [""]
    assert consensus([["correct", "incorrect"], ["neutral", "neutral"]]) == ["neutral", ""]  # correct/neutral: no mistake; correct/incorrect: unresolved
    assert consensus([]) == []


def test_stepwise_row_stops_at_the_first_wrong_step():
    row = stepwise_row(prompt="p", steps=["s1", "s2", "s3", "s4"], labels=["correct", "neutral", "incorrect", "correct"])
    assert row == {"prompt": "p", "completions": ["s1", "s2", "s3"], "labels": [True, True, False],
                   "step_labels": ["correct", "neutral", "incorrect"], "first_wrong_step": 2}
    clean = stepwise_row(prompt="p", steps=["s1", "s2"], labels=["correct", "correct"])
    assert clean["completions"] == ["s1", "s2"] and clean["labels"] == [True, True] and clean["first_wrong_step"] == -1
    assert stepwise_row(prompt="p", steps=["s1", "s2"], labels=["", "incorrect"]) is None
