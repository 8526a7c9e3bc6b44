import pytest

from training_backend.rewards import language_consistency_reward, language_consistency_rewards


@pytest.mark.parametrize(
    ("completion", "lang", "expected"),
    [
        ("<think>Let me add the numbers</think><answer>5</answer>", "en", 1.0),
        ("<think>Let me 计算</think>", "en", 0.5),  # 2 English words... and 2 CJK characters
        ("<think>我们计算</think>", "zh", 1.0),
        ("<think>我们 compute</think>", "zh", 2 / 3),
        ("<think>Привет world</think>", "en", 0.5),  # Cyrillic counts against
        ("<think>so x = 3 and $\\frac{a}{b}$ 2+2=4</think>", "en", 1.0),  # math and variables neutral
        ("<think>设 x = 3, 则 y = 4</think>", "zh", 1.0),  # lone letters are variables
        ("<think>1+1=2</think>", "en", 1.0),  # no words: nothing mixed
        ("no think span so the whole text counts 中", "en", 8 / 9),
        ("<think>café naïve don't</think>", "en", 1.0),
        ("", "zh", 1.0),
    ],
)
def test_language_consistency_reward(completion, lang, expected):
    assert language_consistency_reward(completion, lang) == pytest.approx(expected)


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="supported: en, zh"):
        language_consistency_reward("x", "fr")


def test_batch_form_takes_one_code_or_a_column():
    completions = ["<think>hello there</think>", "<think>你好</think>"]
    assert language_consistency_rewards(completions, target_lang="en") == [1.0, 0.0]
    assert language_consistency_rewards(completions, target_lang=["en", "zh"]) == [1.0, 1.0]
    assert language_consistency_rewards(completions, target_lang=["en", None]) == [1.0, None]
    assert language_consistency_rewards(completions) == [None, None]
