import time

import pytest

from training_backend.rewards import as_text, extract_answer, extract_code, extract_think, last_boxed


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("<think>a</think><answer> 42 </answer>", "42"),
        ("<answer>1</answer><answer>2</answer>", "2"),
        ("<answer>\n\\frac{1}{2}\n</answer>", "\\frac{1}{2}"),
        ("so \\boxed{3} or rather \\boxed{4}", "4"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("\\boxed{3} and a cut-off \\boxed{4", "3"),
        ("\\fbox{9}", "9"),
        ("\\boxed {7}", "7"),
        ("<answer> </answer>", None),
        ("<answer>unclosed", None),
        ("nothing here", None),
        (None, None),
    ],
)
def test_extract_answer(completion, answer):
    assert extract_answer(completion) == answer


@pytest.mark.parametrize(
    ("completion", "think"),
    [
        ("<think> step 1 </think><answer>1</answer>", "step 1"),
        ("prefilled opening tag </think> <answer>1</answer>", "prefilled opening tag"),
        ("<think>first</think><think>second</think>", "first"),
        ("<think>never closed", None),
        ("<answer>1</answer>", None),
    ],
)
def test_extract_think(completion, think):
    assert extract_think(completion) == think


@pytest.mark.parametrize(
    ("completion", "code"),
    [
        ("<answer>```python\nx = 1\n```</answer>", "x = 1\n"),
        ("```python\na = 1\n```\n<answer>```py\nb = 2\n```</answer>", "b = 2\n"),
        ("```python\na = 1\n```\ntext\n```python\nb = 2\n```", "b = 2\n"),
        ("```js\nlet a\n```", None),
        ("no code", None),
    ],
)
def test_extract_code(completion, code):
    assert extract_code(completion) == code


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (None, ""),
        (b"\xffa", "\ufffda"),
        ([{"role": "assistant", "content": "hi"}], "hi"),
        ({"content": "x"}, "x"),
        (3, "3"),
    ],
)
def test_as_text_takes_any_shape(value, text):
    assert as_text(value) == text


@pytest.mark.parametrize(
    "hostile",
    ["<think>" * 100_000, "</answer>" + "<answer>" * 100_000, "\\boxed{" * 100_000, "```python\n" * 50_000],
)
def test_unclosed_tag_floods_take_linear_time(hostile):
    started = time.monotonic()
    extract_answer(hostile), extract_think(hostile), extract_code(hostile), last_boxed(hostile)
    assert time.monotonic() - started < 2.0
