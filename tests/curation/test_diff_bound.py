"""The revision diff is bounded (issue 15, finding 7): word by word for normal sizes, by sentence
and line above WORD_DIFF_MAX_TOKENS, and never more than WORK_BUDGET matcher steps, up to the
fields' maximum length. Every check here is on sizes and counted work, never on a clock.

Before the bound, two 6,000-word revisions took ~15 s of difflib on the history page (open to
viewers), and the cost grew roughly with the cube of the text."""
import difflib
import random

import pytest
from django.urls import reverse

from r1lab.curation import diff, forms
from r1lab.curation.services.examples import example_save
from tests.curation.conftest import make_example
from tests.factories import UserFactory

MAX_CHARS = forms.EditorForm.base_fields["reasoning"].max_length  # 200,000
WORDS = ["alpha", "beta", "gamma", "delta", "sum", "is", "the", "we", "so", "check", "wait", "four", "two", "add", "then"]


def prose(n_words: int, seed: int) -> str:
    """Reasoning-like text: sentences of 12 words, a paragraph break every 6 sentences."""
    rng = random.Random(seed)
    out = []
    for i in range(n_words):
        out.append(rng.choice(WORDS) + f"{rng.randrange(50)}")
        out.append(".\n\n" if i % 72 == 71 else ". " if i % 12 == 11 else " ")
    return "".join(out)


def rebuilds(d, old, new):
    assert "".join(s.text for s in d.segments if s.op != "insert") == old
    assert "".join(s.text for s in d.segments if s.op != "delete") == new
    return True


def test_the_matcher_is_difflib_s_on_small_inputs():
    rng = random.Random(1)
    for _ in range(200):
        a = [rng.choice("ab c.") for _ in range(rng.randrange(30))]
        b = [rng.choice("ab c.") for _ in range(rng.randrange(30))]
        want = [tuple(op) for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()]
        assert diff._opcodes(a, b, diff._Budget(10**9)) == want


def test_every_level_rebuilds_both_texts():
    rng = random.Random(2)
    parts = ["a", "b", " ", "\n", "\n\n", ". ", "x.", "?", "。"]
    for _ in range(300):
        old = "".join(rng.choice(parts) for _ in range(rng.randrange(40)))
        new = "".join(rng.choice(parts) for _ in range(rng.randrange(40)))
        assert "".join(diff.chunks(old)) == old
        assert rebuilds(diff.text_diff(old, new), old, new)


def test_above_the_size_bound_the_diff_is_by_sentence_with_the_changed_one_by_word():
    old = prose(diff.WORD_DIFF_MAX_TOKENS // 2, seed=3)  # old + new middles: ~2x the bound in tokens
    sentences = diff.chunks(old)
    middle = len(sentences) // 2
    changed = sentences[middle].split(" ")
    changed[3] = "CHANGED"
    new = "".join(sentences[:middle]) + " ".join(changed) + "".join(sentences[middle + 1:]) + "Appended at the end."
    d = diff.text_diff(old, new)
    assert d.level == diff.LINE and rebuilds(d, old, new)
    # The changed sentence was refined word by word; the rest is equal.
    assert [s.text for s in d.segments if s.op == "insert"] == ["CHANGED", "Appended at the end."]
    assert len([s for s in d.segments if s.op == "delete"]) == 1

    # The same edit on a short text stays word by word.
    short_old, short_new = "".join(sentences[middle - 2:middle + 2]), "".join(sentences[middle - 2:middle]) + " ".join(changed) + sentences[middle + 1]
    assert diff.text_diff(short_old, short_new).level == diff.WORD


def test_a_long_text_without_sentences_is_cut_by_content_so_an_insertion_stays_local():
    words = prose(4000, seed=7).replace(".", "").replace("\n", " ").split()
    old = " ".join(words)
    new = " ".join(words[:2000] + ["INSERTED"] + words[2000:3000] + ["CHANGED"] + words[3001:])
    d = diff.text_diff(old, new)
    assert d.level == diff.LINE and rebuilds(d, old, new)
    assert [s.text.strip() for s in d.segments if s.op == "insert"] == ["INSERTED", "CHANGED"]
    assert [s.text.strip() for s in d.segments if s.op == "delete"] == [words[3000]]


@pytest.mark.parametrize("case", ["prose rewrite", "prose edit", "one popular token", "repeated sentences", "repeated lines"])
def test_work_stays_within_the_budget_at_the_field_s_maximum_length(case):
    n_words = MAX_CHARS // 9
    old, new = {
        "prose rewrite": (prose(n_words, 4), prose(n_words, 5)),
        "prose edit": (prose(n_words, 4), prose(n_words, 4).replace("sum1", "total1")),
        "one popular token": ("a b " * (MAX_CHARS // 4), "a c " * (MAX_CHARS // 4)),
        "repeated sentences": ("Wait. Yes. " * (MAX_CHARS // 11), "Yes. Wait. No. " * (MAX_CHARS // 15)),
        "repeated lines": ("x.\n" * (MAX_CHARS // 3), "y.\nx.\n" * (MAX_CHARS // 6)),
    }[case]
    assert len(old) <= MAX_CHARS and len(new) <= MAX_CHARS
    d = diff.text_diff(old, new)
    # One step over the budget at most: the search stops at the first row that crosses it.
    assert d.work <= diff.WORK_BUDGET + len(new)
    assert rebuilds(d, old, new)


@pytest.mark.django_db
def test_history_page_of_two_6000_word_revisions_shows_the_bounded_diff(client, project, lead):
    old = prose(6000, seed=6)
    new = old.replace("alpha7 ", "omega7 ")
    assert old != new
    ex = make_example(project, lead, reasoning=old)
    example_save(example=ex, user=lead, based_on=1, changes={"reasoning": new})
    client.force_login(UserFactory(role="viewer"))  # the history page is open to viewers
    html = client.get(reverse("curation:history", kwargs={"pk": ex.pk}) + "?a=1&b=2").content.decode()
    assert 'data-level="line"' in html
    assert "<del>alpha7</del><ins>omega7</ins>" in html
