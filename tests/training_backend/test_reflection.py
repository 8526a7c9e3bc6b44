import pytest

from training_backend.reflection import REFLECTION_MARKERS, count_reflections, find_reflections, reflection_stats


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("<think> 7+5=12>2 wait, let me recheck: 7+5=12 </think> <answer> 12 </answer>", 2),  # tiny model's phrase
        ("<think>Wait. WAIT. wait</think>", 3),  # case-insensitive
        ("<think>waiting awaited wait-time</think>", 1),  # word-bounded: only the standalone 'wait'
        ("<think>However, alternatively, let me try again and think again</think>", 4),
        ("<think>re-evaluate, reevaluate, re-examine, double-check, double check, reconsider</think>", 6),
        ("<think>let me check again</think><answer>wait</answer>", 1),  # answer span not scanned
        ("no think span: wait, retry", 2),  # whole text
        ("<think>unclosed think, wait", 1),  # unclosed: whole text
        ("<think>nothing to see</think>", 0),
        ("", 0),
        (None, 0),
    ],
)
def test_count_reflections(text, count):
    assert count_reflections(text) == count


def test_every_published_marker_is_found():
    for marker in REFLECTION_MARKERS:
        assert count_reflections(f"<think>so, {marker.upper()} now</think>") == 1, marker


def test_find_reflections_gives_offsets_into_the_full_text():
    text = "<answer>x</answer><think>ok Wait, rethink</think>"
    spans = find_reflections(text)
    assert [w for _, _, w in spans] == ["Wait", "rethink"]
    assert all(text[s:e] == w for s, e, w in spans)


def test_reflection_stats_pools_tokens_and_splits_by_correctness():
    completions = ["<think>wait wait</think>", "<think>plain</think>", "<think>recheck</think>", "<think>no</think>"]
    stats = reflection_stats(completions, [100, 100, 200, 600], [True, True, False, False])
    assert stats == {
        "reflection/rate_per_1k_tokens": pytest.approx(1000 * 3 / 1000),
        "reflection/frac_responses": 0.5,
        "reflection/rate_per_1k_tokens/correct": pytest.approx(1000 * 2 / 200),
        "reflection/frac_responses/correct": 0.5,
        "reflection/rate_per_1k_tokens/incorrect": pytest.approx(1000 * 1 / 800),
        "reflection/frac_responses/incorrect": 0.5,
    }


def test_reflection_stats_omits_empty_splits_and_empty_batches():
    stats = reflection_stats(["<think>wait</think>"], [10], [True])
    assert set(stats) == {
        "reflection/rate_per_1k_tokens",
        "reflection/frac_responses",
        "reflection/rate_per_1k_tokens/correct",
        "reflection/frac_responses/correct",
    }
    assert set(reflection_stats(["wait"], [10])) == {"reflection/rate_per_1k_tokens", "reflection/frac_responses"}
    assert reflection_stats([], []) == {}
    assert reflection_stats(["wait"], [0])["reflection/rate_per_1k_tokens"] == 0.0


def test_reflection_stats_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        reflection_stats(["a", "b"], [1])
    with pytest.raises(ValueError):
        reflection_stats(["a"], [1], [True, False])


def test_fast_marker_search_agrees_with_find_reflections():
    from training_backend.reflection import count_reflections, find_reflections
    from training_backend.reflection import reflection_spans as markers

    texts = ["<think>WAIT. Double check, re-examine; RETHINK. waiting is not one.</think>x",
             "İstanbul wait, however</think>", "Kelvin \u212a wait", "no markers here", "try\nagain and think   again"]
    for t in texts:
        want = [(a, b) for a, b, _ in find_reflections(t)]
        assert markers(t) == want
        assert markers(t, count_reflections(t)) == want
    assert markers("wait", 0) == []
