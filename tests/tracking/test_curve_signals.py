"""The aha-moment change-point detector and the alarms, on crafted series."""
import random

from r1lab.tracking.curve_signals import alarms, detect_level_change


def noisy(levels, sd=0.1, seed=0):
    rng = random.Random(seed)
    return [lv + rng.gauss(0, sd) for lv in levels]


def test_finds_the_step_where_the_level_moves():
    steps = list(range(0, 400, 2))
    values = noisy([0.5] * 120 + [3.0] * 80)
    cp = detect_level_change(steps, values)
    assert cp is not None and cp.step == steps[120]
    assert abs(cp.before - 0.5) < 0.05 and abs(cp.after - 3.0) < 0.05


def test_noise_alone_is_no_aha_moment():
    for seed in range(5):
        values = noisy([1.0] * 300, seed=seed)
        assert detect_level_change(list(range(300)), values, min_shift=0.1 * (max(values) - min(values))) is None


def test_a_slow_ramp_is_split_near_its_middle_but_a_flat_series_is_not():
    assert detect_level_change(list(range(50)), [2.0] * 50) is None
    cp = detect_level_change(list(range(100)), [i / 100 for i in range(100)])
    assert cp is not None and 35 <= cp.step <= 65


def test_too_short_series_has_no_change_point():
    assert detect_level_change([1, 2, 3], [0, 5, 5]) is None


def test_alarms_fire_with_their_step():
    steps = list(range(100))
    series = {
        "entropy": (steps, [1.0] * 60 + [0.05] * 40),
        "frac_reward_zero_std": (steps, [0.3] * 80 + [0.95] * 20),
        "completions/mean_length": (steps, [200 + 10 * i for i in range(100)]),
        "rewards/accuracy/mean": (steps, [0.5] * 100),
        "rewards/language/mean": (steps, [1.0] * 50 + [0.7] * 50),
    }
    got = {a["kind"]: a["step"] for a in alarms(series)}
    assert got == {"entropy_collapse": 60, "zero_std": 80, "length_without_accuracy": 67, "language_mixing": 50}


def test_healthy_run_raises_no_alarm():
    steps = list(range(100))
    series = {
        "entropy": (steps, [1.0 - i / 400 for i in range(100)]),
        "frac_reward_zero_std": (steps, [0.3] * 100),
        "completions/mean_length": (steps, [200 + 10 * i for i in range(100)]),
        "rewards/accuracy/mean": (steps, [0.2 + i / 200 for i in range(100)]),
    }
    assert alarms(series) == []
