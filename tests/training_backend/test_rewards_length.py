import pytest

from training_backend.rewards import (
    cosine_length_reward,
    cosine_length_rewards,
    overlong_penalties,
    overlong_penalty,
    repetition_penalty_reward,
    repetition_penalty_rewards,
)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (80, 0.0), (90, -0.5), (100, -1.0), (101, -1.0), (10_000, -1.0)],
)
def test_overlong_penalty_is_dapos_soft_punishment(length, expected):
    assert overlong_penalty(length, max_len=100, cache_len=20) == pytest.approx(expected)


def test_overlong_batch_reads_token_lengths_else_characters():
    assert overlong_penalties(["a" * 90, "b"], completion_lengths=[0, 100], max_len=100, cache_len=20) == [0.0, -1.0]
    assert overlong_penalties(["a" * 90, "b"], max_len=100, cache_len=20) == pytest.approx([-0.5, 0.0])


def test_overlong_rejects_impossible_settings():
    with pytest.raises(ValueError):
        overlong_penalty(1, max_len=10, cache_len=20)


@pytest.mark.parametrize(
    ("is_correct", "length", "expected"),
    [
        (True, 0, 1.0),
        (True, 50, 0.75),
        (True, 100, 0.5),
        (True, 500, 0.5),  # clamped past max_len
        (False, 0, -1.0),
        (False, 50, -0.75),
        (False, 100, -0.5),
    ],
)
def test_cosine_length_reward(is_correct, length, expected):
    assert cosine_length_reward(is_correct=is_correct, length=length, max_len=100) == pytest.approx(expected)


def test_cosine_batch_scores_correctness_from_the_gold():
    completions = ["<answer>4</answer>", "<answer>5</answer>", "<answer>4</answer>"]
    rewards = cosine_length_rewards(completions, answer=["4", "4", None], completion_lengths=[0, 0, 0], max_len=10)
    assert rewards == [1.0, -1.0, None]
    assert cosine_length_rewards(["x"], correct=[True], completion_lengths=[10], max_len=10) == [0.5]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("the cat sat on the mat", 0.0),
        ("a b c a b c a b c", -(1 - 3 / 7)),
        ("go go go go go", -(1 - 1 / 3)),
        ("short", 0.0),
        ("", 0.0),
        ("我们我们我们我们", -(1 - 2 / 6)),  # CJK characters are words
        (None, 0.0),
    ],
)
def test_repetition_penalty_reward(completion, expected):
    assert repetition_penalty_reward(completion, ngram_size=3, max_penalty=-1.0) == pytest.approx(expected)


def test_repetition_batch_and_settings():
    assert repetition_penalty_rewards(["go go go go go"], ngram_size=1, max_penalty=-0.5) == [pytest.approx(-0.4)]
    with pytest.raises(ValueError):
        repetition_penalty_reward("x", max_penalty=1.0)
