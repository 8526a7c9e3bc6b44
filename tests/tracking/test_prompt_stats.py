"""The prompt-lineage rollup: solve-rate classes on hand-built groups, logged through the real
ingest path (parse + tracked_run_log), kept right across split batches, late steps, retries and
rewinds, and equal to a rebuild from the rollouts."""
from __future__ import annotations

import pytest

from r1lab.tracking import prompt_stats as ps
from r1lab.tracking.models import PromptClassStep, PromptLineage, PromptStepStat
from r1lab.tracking.services import tracked_run_create, tracked_run_rewind
from tests.rollouts.helpers import lineage_group, log, log_hand_built

pytestmark = pytest.mark.django_db


def lineage(run) -> dict[str, PromptLineage]:
    return {p.prompt_id: p for p in PromptLineage.objects.filter(run=run)}


def tables(run) -> tuple[list, list]:
    stats = sorted(PromptStepStat.objects.filter(run=run).values_list("prompt_id", "step", "n", "graded", "correct", "zero_var",
                                                                       "cls", "cls_before", "zero_var_before"))
    prompts = sorted(PromptLineage.objects.filter(run=run).values_list(
        "prompt_id", "prompt", "gold", "cls", "zero_var", "samplings", "first_step", "last_step", "first_rate", "last_rate",
        "min_rate", "max_rate", "graded", "correct"))
    return stats, prompts, class_moves(run)


def class_moves(run) -> dict[int, dict[str, int]]:
    """PromptClassStep as {step: {column: move}} without the zeros."""
    cols = ("learned", "forgotten", "always", "never", "mixed", "zero_variance")
    out = {}
    for step, *values in PromptClassStep.objects.filter(run=run).values_list("step", *cols):
        moved = {c: v for c, v in zip(cols, values) if v}
        if moved:
            out[step] = moved
    return out


@pytest.mark.parametrize("rates,cls", [
    ([0.0, 0.5, 1.0], "learned"),
    ([0.25, 0.75], "learned"),  # the bounds count
    ([0.5, 1.0], "mixed"),  # never as low as 25%
    ([1.0, 1.0, 0.0], "forgotten"),
    ([0.75, 0.25], "forgotten"),
    ([0.0, 1.0, 0.5], "mixed"),  # learned, then slipped: not learned any more
    ([0.0, 1.0, 0.0], "forgotten"),
    ([1.0, 1.0, 1.0], "always"),
    ([1.0], "always"),
    ([0.0, 0.0], "never"),
    ([0.5], "mixed"),
])
def test_classes_from_a_prompts_solve_rates(rates, cls):
    aggs = [ps.StepAgg(step, 4, 4, int(r * 4), False) for step, r in enumerate(rates)]
    derived = ps.derive(aggs)
    assert derived[-1].cls == cls
    assert ps.summary(derived)["cls"] == cls


def test_hand_built_groups_are_classified_at_ingest():
    """tests.rollouts.helpers.HAND_BUILT: A learned, B forgotten, C always, D never, E mixed, F always."""
    run, _ = tracked_run_create(name="lineage")
    log_hand_built(run)
    got = lineage(run)
    assert {pid: p.cls for pid, p in got.items()} == {
        "A": "learned", "B": "forgotten", "C": "always", "D": "never", "E": "mixed", "F": "always"}
    assert {pid for pid, p in got.items() if p.zero_var} == {"A", "C", "D"}  # A's last group: 4/4, all reward 1
    a = got["A"]
    assert (a.samplings, a.first_step, a.last_step, a.first_rate, a.last_rate, a.min_rate, a.max_rate) == (3, 1, 3, 0.0, 1.0, 0.0, 1.0)
    assert (a.graded, a.correct, a.rate, a.prompt, a.gold) == (12, 6, 0.5, "Problem A", "7")
    b = PromptStepStat.objects.get(run=run, prompt_id="B", step=3)
    assert (b.n, b.graded, b.correct, b.cls, b.cls_before, b.zero_var, b.zero_var_before) == (
        4, 4, 1, "forgotten", "always", False, True)
    # how the class counts moved at each step (the chart's running sum): A never → mixed → learned and
    # zero-var off → on, B always → forgotten and zero-var on → off, C and F stay always, D never, E mixed
    assert class_moves(run) == {
        1: {"always": 3, "never": 2, "mixed": 1, "zero_variance": 4},
        2: {"never": -1, "mixed": 1, "zero_variance": -1},
        3: {"learned": 1, "forgotten": 1, "always": -1, "mixed": -1},
    }


def test_incremental_rollup_equals_a_rebuild_from_the_rollouts():
    run, _ = tracked_run_create(name="lineage")
    log_hand_built(run)
    incremental = tables(run)
    assert ps.prompt_stats_rebuild(run_id=run.pk) == 6
    assert tables(run) == incremental


def test_split_groups_late_steps_and_retries_give_the_in_order_result():
    straight, _ = tracked_run_create(name="in order")
    for step, correct in ((1, 0), (2, 4)):
        log(straight, lineage_group(step, "A", correct))
    messy, _ = tracked_run_create(name="messy")
    later = lineage_group(2, "A", 4)
    log(messy, later[:2])  # half of step 2's group, before step 1 exists
    log(messy, lineage_group(1, "A", 0))  # the earlier step arrives late
    log(messy, later)  # a retry of the first half and the second half
    log(messy, later)  # and a plain retry
    assert lineage(messy)["A"].cls == "learned"
    assert tables(messy)[0] == tables(straight)[0] and class_moves(messy) == class_moves(straight)
    assert PromptStepStat.objects.get(run=messy, prompt_id="A", step=2).n == 4


def test_a_rewind_takes_the_lost_steps_out_of_the_classes():
    run, _ = tracked_run_create(name="lineage")
    log_hand_built(run)
    tracked_run_rewind(run=run, after_step=1)
    got = lineage(run)
    assert {pid: p.cls for pid, p in got.items()} == {
        "A": "never", "B": "always", "C": "always", "D": "never", "E": "mixed", "F": "always"}
    assert got["A"].last_step == 1 and not PromptStepStat.objects.filter(run=run, step__gt=1).exists()
    assert class_moves(run) == {1: {"always": 3, "never": 2, "mixed": 1, "zero_variance": 4}}
    # the resumed attempt logs step 2 again, differently: A is learned after all
    log(run, lineage_group(2, "A", 4))
    assert lineage(run)["A"].cls == "learned"
    assert class_moves(run)[2] == {"never": -1, "learned": 1}  # A alone at step 2 now, zero-variance both times
    tracked_run_rewind(run=run, after_step=-1)
    assert not PromptLineage.objects.filter(run=run).exists() and not PromptStepStat.objects.filter(run=run).exists()
    assert not class_moves(run)


def test_rollouts_without_a_prompt_id_or_a_grade_are_not_counted():
    run, _ = tracked_run_create(name="lineage")
    ungraded = [{**s, "rewards": {"format": 1.0}} for s in lineage_group(1, "U", 2)]
    anonymous = [{k: v for k, v in s.items() if k != "prompt_id"} for s in lineage_group(1, "X", 2, group_no=1)]
    log(run, ungraded + anonymous)
    assert not PromptLineage.objects.filter(run=run).exists() and not PromptStepStat.objects.filter(run=run).exists()
    assert ps.prompt_stats_rebuild(run_id=run.pk) == 0
