from r1lab.rollouts.stats import wilson_interval
from r1lab.rollouts.text import segments


def test_segments_split_think_answer_tags_and_reflections_and_rejoin_exactly():
    text = "<think>First try. Wait, recheck: 2+2=4.</think>\n<answer>4</answer>"
    segs = segments(text)
    assert "".join(s.text for s in segs) == text
    assert [tuple(s) for s in segs] == [
        ("tag", "<think>"), ("think", "First try. "), ("think refl", "Wait"), ("think", ", "), ("think refl", "recheck"),
        ("think", ": 2+2=4."), ("tag", "</think>"), ("other", "\n"), ("tag", "<answer>"), ("answer", "4"), ("tag", "</answer>"),
    ]


def test_completion_starting_inside_think_as_in_the_r1_zero_template():
    segs = segments("hmm, alternatively 3</think><answer>3</answer>")
    assert segs[0].cls == "think" and segs[1] == segs[1].__class__("think refl", "alternatively")
    assert [s.cls for s in segs[-3:]] == ["tag", "answer", "tag"]


def test_no_tags_is_all_other_with_reflections_marked():
    segs = segments("no tags. However, fine.")
    assert [tuple(s) for s in segs] == [("other", "no tags. "), ("other refl", "However"), ("other", ", fine.")]
    assert segments("") == []


def test_unclosed_answer_and_markup_stay_text():
    text = "<think>x</think><answer><script>alert(1)</script>"
    segs = segments(text)
    assert "".join(s.text for s in segs) == text
    assert segs[-1].cls == "answer" and segs[-1].text == "<script>alert(1)</script>"


def test_wilson_interval():
    p = wilson_interval(0, 50)
    assert p.estimate == 0.0 and p.low == 0.0 and 0.06 < p.high < 0.08  # 0 errors in 50: up to ~7%
    p = wilson_interval(1, 100)
    assert abs(p.low - 0.00177) < 1e-4 and abs(p.high - 0.05448) < 1e-4
    assert wilson_interval(0, 0).estimate is None
    assert wilson_interval(10, 10).high == 1.0
