"""Per-word script classification for the 'words outside the target language' highlight."""
from r1lab.curation.checks import live_checks, off_language_words


def test_english_text_with_chinese_words_flags_them():
    text = "First we add them. 但是 the sum is 4."
    flagged = off_language_words(text, "en")
    assert [(f["word"], f["script"]) for f in flagged] == [("但", "Han"), ("是", "Han")]
    assert text[flagged[0]["start"]:flagged[0]["end"]] == "但"


def test_chinese_text_skips_math_and_single_letter_variables():
    text = "设 x 为 $\\frac{a}{b}$ 的值, so 答案是 4"
    assert [f["word"] for f in off_language_words(text, "zh")] == ["so"]


def test_unknown_language_flags_nothing():
    assert off_language_words("anything 任何", "xx") == []


def test_live_checks_include_spans():
    out = live_checks(reasoning="Wait, 2+2 是 4.", summary="4", gold_answer="4", language="en")
    assert out["accuracy"] == 1.0 and out["format_score"] == 1.0
    assert out["reflections"][0]["word"] == "Wait"
    assert [w["word"] for w in out["off_language"]["reasoning"]] == ["是"]
    assert out["language_score"] < 1.0
