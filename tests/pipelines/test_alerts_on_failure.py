"""A failed stage and a crashed run notify the project (issue 17 part 5): the worker's side of an
attempt (attempts.py) raises the alarm when it records the failure, once per attempt, sent after
commit. Before, a failed stage told nobody: these tests failed."""
from datetime import timedelta

import pytest
from django.utils import timezone

from r1lab.pipelines import attempts, services
from r1lab.pipelines.models import Stage
from r1lab.tracking.models import Alert, AlertSettings
from tests.pipelines.test_services import _make_run, _start, data_dir, inputs  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def alert_settings():
    return AlertSettings.objects.create(project="", emails="ops@example.org")  # every project


@pytest.mark.parametrize("exit_code,kind,detail", [
    (1, "crashed", "trainer crashed (exit 1)"),
    (2, "stage_failed", "bad spec (exit 2, see the log)"),
    (75, "stage_failed", "stopped (SIGTERM) after a checkpoint"),
])
def test_a_failed_attempt_raises_its_alarm_once(inputs, exit_code, kind, detail, django_capture_on_commit_callbacks):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    attempts.stage_heartbeat(stage_id=stage.pk, attempt=1, step=7, total=10)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=exit_code, outputs=None,
                                      signalled_cancel=False)
    stage.refresh_from_db()
    (alert,) = Alert.objects.all()
    assert (alert.run_id, alert.kind, alert.key, alert.step) == (stage.tracked_run_id, kind, "attempt-1", 7)
    assert alert.message == f"stage attempt 1: {detail}" and alert.deliveries.get().channel == "email"
    assert any(cb.__module__ == "r1lab.tracking.alert_services" for cb in queued)  # sent after commit
    # a redelivered finish changes nothing, and raises nothing again
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=exit_code, outputs=None, signalled_cancel=False)
    assert Alert.objects.count() == 1


def test_success_and_cancel_raise_nothing(inputs):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=0, outputs=None, signalled_cancel=False)
    assert not Alert.objects.exists()


def test_a_lost_worker_is_a_crashed_run(inputs):
    run, user = _make_run(inputs)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    _start(stage)
    Stage.objects.filter(pk=stage.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert attempts.stages_mark_lost(timeout_s=45) == [stage.pk]
    (alert,) = Alert.objects.all()
    assert (alert.kind, alert.key, alert.message) == ("crashed", "attempt-1", "stage attempt 1: worker lost")
