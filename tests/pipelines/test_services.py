"""The stage state machine and the services around it, on the real database (no worker here:
the worker's side is called directly, as the task would)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from r1lab.pipelines import attempts, services, state_machine
from r1lab.pipelines.models import PipelineRun, Stage, StageAttempt
from r1lab.pipelines.stage_templates import MAKE_BASE, TEMPLATES, custom_template
from r1lab.tracking.models import Run as TrackedRun
from tests.factories import UserFactory
from tests.pipelines.factories import TINY_GRPO, BaseModelFactory, PromptSetFactory, write_prompts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    return settings.R1LAB_DATA_DIR


@pytest.fixture
def inputs(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    train, ev = write_prompts(tmp_path / "prompts")
    return (BaseModelFactory(path=str(model_dir)),
            PromptSetFactory(train_path=str(train), eval_path=str(ev), train_count=16, eval_count=4))


def _make_run(inputs, template=TEMPLATES["r1_zero"], configs=None, **kw):
    base, prompts = inputs
    user = UserFactory(role="researcher")
    plans = services.pipeline_plan(template=template, configs=configs or [dict(TINY_GRPO)] * len(template.stages),
                                   base_model=base, prompt_set=prompts, **kw)
    run = services.pipeline_run_create(name="r", template_key=template.key, plans=plans, user=user,
                                       base_model=base, prompt_set=prompts)
    return run, user


def _start(stage: Stage):
    return attempts.stage_attempt_start(stage_id=stage.pk, attempt=stage.attempt, worker_host="h", worker_pid=1)


@pytest.mark.parametrize("override,field,needle", [
    ({"num_generations": 1}, "s0-num_generations", "at least 2"),
    ({"num_generations": 4, "batch_size": 10}, "s0-batch_size", "not divisible"),
    ({"reward_funcs": ["accuracy", "vibes"]}, "s0-reward_funcs", "unknown reward 'vibes'"),
    ({"learning_rate": "fast"}, "s0-learning_rate", "expected a number"),
])
def test_bad_config_is_rejected_per_field_and_nothing_is_created(inputs, override, field, needle):
    with pytest.raises(state_machine.PipelineValidationError) as exc:
        _make_run(inputs, configs=[{**TINY_GRPO, **override}])
    assert needle in exc.value.errors[field]
    assert PipelineRun.objects.count() == 0 and Stage.objects.count() == 0


def test_a_model_path_missing_on_the_shared_disk_is_rejected(inputs):
    base, prompts = inputs
    base.path = "/nowhere/at/all"
    base.save()
    with pytest.raises(state_machine.PipelineValidationError) as exc:
        _make_run((base, prompts))
    assert "does not exist" in exc.value.errors["base_model"]


def test_templates_whose_kinds_the_trainer_lacks_are_refused_by_name(inputs):
    tpl = custom_template(["grpo", "ppo_from_the_future"])
    assert tpl.missing_kinds() == ["ppo_from_the_future"] and not tpl.available
    with pytest.raises(state_machine.PipelineValidationError) as exc:
        _make_run(inputs, template=tpl, configs=[dict(TINY_GRPO), {}])
    assert "ppo_from_the_future" in exc.value.errors["template"]
    assert PipelineRun.objects.count() == 0


def test_launch_queues_the_first_stage_after_commit_with_a_tracked_run(inputs, django_capture_on_commit_callbacks):
    run, user = _make_run(inputs)
    stage = run.stages.get()
    assert stage.config["num_generations"] == 4 and stage.config["beta"] == 0.0  # stored as validated
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.pipeline_run_launch(run=run, user=user)
    stage.refresh_from_db()
    run.refresh_from_db()
    assert (stage.status, stage.attempt, run.status) == ("queued", 1, "queued")
    assert stage.tracked_run is not None and stage.tracked_run.status == "running"
    # the runs list finds it by its pipeline's template (issue 17: `template = "r1_zero"`)
    assert stage.tracked_run.config["template"] == run.template and stage.tracked_run.config["num_generations"] == 4
    assert StageAttempt.objects.get(stage=stage).outcome == "queued"
    assert len(callbacks) >= 1  # the task is sent only once the transaction commits


def test_start_run_finish_and_the_next_stage_follows_with_the_outputs(inputs, tmp_path):
    tpl = custom_template(["grpo", "grpo"])
    run, user = _make_run(inputs, template=tpl)
    services.pipeline_run_launch(run=run, user=user)
    first, second = run.stages.order_by("index")
    first.refresh_from_db()
    start = _start(first)
    assert start is not None and start.model_path == inputs[0].path and start.eval_data == inputs[1].eval_path
    assert _start(first) is None  # a redelivered message for the same attempt does nothing
    assert attempts.stage_heartbeat(stage_id=first.pk, attempt=1, step=2, total=3, eta_s=1.5) == "ok"
    first.refresh_from_db()
    assert (first.status, first.progress_step, first.progress_pct) == ("running", 2, 66.7)
    final = tmp_path / "final"
    final.mkdir()
    attempts.stage_attempt_finish(stage_id=first.pk, attempt=1, exit_code=0,
                                  outputs={"final_model": str(final), "summary": {"last/reward": 0.5}},
                                  signalled_cancel=False)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "succeeded" and first.tracked_run.status == "succeeded"
    assert (second.status, second.attempt) == ("queued", 1)
    start2 = _start(second)
    assert start2.model_path == str(final)  # the previous stage's checkpoint is this one's model
    assert Stage.objects.get(pk=second.pk).resolved_inputs["model"]["stage_id"] == first.pk
    attempts.stage_attempt_finish(stage_id=second.pk, attempt=1, exit_code=0, outputs={"final_model": str(final)},
                                  signalled_cancel=False)
    run.refresh_from_db()
    assert run.status == "succeeded"
    # finishing an attempt twice (a redelivery after the fact) changes nothing
    assert attempts.stage_attempt_finish(stage_id=second.pk, attempt=1, exit_code=1, outputs=None,
                                         signalled_cancel=False) is None


@pytest.mark.parametrize("exit_code,detail,tracked", [
    (1, "trainer crashed (exit 1)", "crashed"),
    (2, "bad spec (exit 2, see the log)", "failed"),
    (75, "stopped (SIGTERM) after a checkpoint", "failed"),
])
def test_failures_are_recorded_with_their_reason(inputs, exit_code, detail, tracked):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=exit_code, outputs=None, signalled_cancel=False)
    stage.refresh_from_db()
    run.refresh_from_db()
    assert (stage.status, stage.status_detail, stage.exit_code, run.status) == ("failed", detail, exit_code, "failed")
    assert stage.tracked_run.status == tracked


def test_cancel_a_running_stage_is_relayed_to_its_worker_then_recorded(inputs):
    run, user = _make_run(inputs, template=custom_template(["grpo", "grpo"]))
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get(index=0)
    _start(stage)
    services.pipeline_run_cancel(run=run, user=user)
    stage.refresh_from_db()
    assert stage.status == "running" and stage.cancel_requested  # the worker owns the subprocess
    assert attempts.stage_heartbeat(stage_id=stage.pk, attempt=1, step=1, total=3) == "cancel"
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=75, outputs=None, signalled_cancel=True)
    stage.refresh_from_db()
    run.refresh_from_db()
    assert stage.status == "cancelled" and stage.tracked_run.status == "cancelled"
    assert run.stages.get(index=1).status == "cancelled" and run.status == "cancelled"


def test_cancel_a_queued_stage_makes_its_message_a_no_op(inputs):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    services.stage_cancel(stage=stage, user=user)
    stage.refresh_from_db()
    assert stage.status == "cancelled"
    assert _start(stage) is None


def test_resume_continues_from_the_checkpoint_in_a_new_attempt(inputs):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    stage.refresh_from_db()
    from pathlib import Path

    (Path(stage.output_dir) / "checkpoints" / "step-000002").mkdir(parents=True)
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=1, outputs=None, signalled_cancel=False)
    with pytest.raises(state_machine.StageTransitionError):
        services.stage_cancel(stage=stage, user=user)  # a failed stage has nothing to cancel
    tracked_before = stage.tracked_run_id
    services.stage_resume(stage=stage, user=user)
    stage.refresh_from_db()
    assert (stage.status, stage.attempt, stage.resume) == ("queued", 2, True)
    assert stage.tracked_run_id == tracked_before  # same curves: steps continue
    start = _start(stage)
    assert start.resume and start.output_dir == stage.output_dir
    with pytest.raises(state_machine.StageTransitionError):
        services.stage_resume(stage=stage, user=user)  # a running stage does not resume


def test_retry_starts_fresh_with_new_output_and_new_tracked_run(inputs):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=1, outputs=None, signalled_cancel=False)
    stage.refresh_from_db()
    old_dir, old_tracked = stage.output_dir, stage.tracked_run_id
    services.stage_retry(stage=stage, user=user)
    stage.refresh_from_db()
    assert stage.attempt == 2 and not stage.resume
    assert stage.output_dir != old_dir and stage.tracked_run_id != old_tracked
    assert TrackedRun.objects.get(pk=old_tracked).status == "crashed"


def test_lost_worker_is_found_by_its_heartbeat_and_can_be_resumed(inputs):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    assert attempts.stages_mark_lost(timeout_s=45) == []  # fresh heartbeat: alive
    Stage.objects.filter(pk=stage.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=50))
    assert attempts.stages_mark_lost(timeout_s=45) == [stage.pk]
    stage.refresh_from_db()
    assert (stage.status, stage.status_detail) == ("failed", "worker lost")
    assert stage.tracked_run.status == "crashed"
    assert StageAttempt.objects.get(stage=stage, number=1).outcome == "worker_lost"
    # the stalled worker, should it wake up, learns its attempt is gone and records nothing
    assert attempts.stage_heartbeat(stage_id=stage.pk, attempt=1, step=3, total=3) == "gone"
    assert attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=0, outputs=None,
                                         signalled_cancel=False) is None
    services.stage_resume(stage=stage, user=user)
    stage.refresh_from_db()
    assert (stage.status, stage.attempt) == ("queued", 2)


def test_build_base_prepends_a_make_base_stage(inputs):
    base, prompts = inputs
    base.path = "/not/built/yet"
    base.save()
    run, _ = _make_run((base, prompts), build_base=True)
    kinds = list(run.stages.order_by("index").values_list("kind", flat=True))
    assert kinds == [MAKE_BASE, "grpo"]
    assert run.stages.get(index=0).inputs == {"output_to": {"from": "base_model", "id": base.pk}}


def test_state_machine_refuses_illegal_moves():
    allowed = {(a, b) for a, tos in state_machine.TRANSITIONS.items() for b in tos}
    assert ("succeeded", "queued") not in allowed and ("pending", "running") not in allowed
    assert ("failed", "queued") in allowed and ("running", "cancelled") in allowed
