import pytest

from training_backend.rewards import format_reward, format_rewards, tag_count_reward


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("  <think>\nlong\nthought\n</think>\n\n<answer>\n42\n</answer>\n", 1.0),
        ("<think> 7+5=12>2 </think> <answer> 432 </answer>", 1.0),
        ("<think>a</think><answer>b</answer> trailing", 0.0),
        ("preamble <think>a</think><answer>b</answer>", 0.0),
        ("<answer>b</answer><think>a</think>", 0.0),
        ("<think>a</think>", 0.0),
        ("<answer>b</answer>", 0.0),
        ("<think>a</think><answer>b</answer><answer>c</answer>", 0.0),
        ("<think>a<answer>x</answer></think><answer>b</answer>", 0.0),
        ("<think>a<think>b</think><answer>c</answer>", 0.0),
        ("<think>a</think><answer>b", 0.0),
        ("", 0.0),
        (None, 0.0),
    ],
)
def test_format_reward(completion, expected):
    assert format_reward(completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>a</think>", 0.5),
        ("<think>a</think><answer>b", 0.75),
        ("<think><think>a</think><answer>b</answer>", 0.75),
        ("plain text", 0.0),
        (None, 0.0),
    ],
)
def test_tag_count_reward(completion, expected):
    assert tag_count_reward(completion) == expected


def test_format_batch_form():
    assert format_rewards(["<think>a</think><answer>b</answer>", "x"], answer=["1", "2"]) == [1.0, 0.0]
