import subprocess
import sys

import pytest

from training_backend.rewards import REWARD_FUNCS, UnknownRewardError, combine_rewards, get_reward_funcs, reward_means

NAMES = ["accuracy", "format", "tag_count", "language_consistency", "code", "overlong", "cosine", "repetition"]


def test_registry_has_the_rule_rewards():
    # Others may register more (e.g. a reward model); these eight are the rule rewards.
    assert set(NAMES) <= set(REWARD_FUNCS)


def test_unknown_names_raise_listing_the_known_ones():
    with pytest.raises(UnknownRewardError) as exc:
        get_reward_funcs(["accuracy", "acuracy", "lenght"])
    message = str(exc.value)
    assert "'acuracy', 'lenght'" in message and "known: accuracy, code, cosine" in message
    with pytest.raises(KeyError, match="known: accuracy"):
        REWARD_FUNCS["nope"]
    assert list(get_reward_funcs(["format", "accuracy"])) == ["format", "accuracy"]


def test_combine_rewards_weights_and_counts_none_as_zero():
    per_fn = {"accuracy": [1.0, 0.0, None], "format": [1.0, 1.0, 0.0]}
    assert combine_rewards(per_fn, {"accuracy": 2.0, "format": 0.5}) == [2.5, 0.5, 0.0]
    assert reward_means(per_fn) == {"accuracy": 0.5, "format": 2 / 3}
    assert reward_means({"code": [None, None]}) == {"code": None}
    assert combine_rewards({}, {}) == []


@pytest.mark.parametrize(
    ("per_fn", "weights"),
    [
        ({"accuracy": [1.0]}, {}),
        ({"accuracy": [1.0]}, {"accuracy": 1.0, "format": 1.0}),
        ({"accuracy": [1.0], "format": [1.0, 0.0]}, {"accuracy": 1.0, "format": 1.0}),
    ],
)
def test_combine_rewards_rejects_mismatches(per_fn, weights):
    with pytest.raises(ValueError):
        combine_rewards(per_fn, weights)


GARBAGE = [
    None,
    "",
    "\x00\xff" * 500,
    "<think>" * 5000,
    "<answer>" + "}" * 1000 + "</answer>",
    "<think><answer></think></answer>",
    "\\boxed{\\boxed{" * 100,
    "中文" * 1000 + "<think>",
    "a " * 50_000,
    [{"role": "assistant", "content": None}],
]


@pytest.mark.parametrize("name", NAMES)
def test_every_batch_fn_returns_one_number_or_none_per_row_on_garbage(name):
    n = len(GARBAGE)
    columns = {"answer": ["1"] * n, "tests": [["assert True"]] + [None] * (n - 1), "target_lang": "en"}
    rewards = REWARD_FUNCS[name](GARBAGE, **columns)
    assert len(rewards) == n
    assert all(r is None or isinstance(r, float) for r in rewards)


def test_importing_the_rewards_pulls_no_torch_and_no_django():
    code = (
        "import sys\n"
        "import training_backend.rewards, training_backend.reflection\n"
        "bad = [m for m in ('torch', 'django', 'r1lab', 'sympy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
