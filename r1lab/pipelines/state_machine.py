"""The stage state machine and the live status of runs, shared by the user's actions
(services.py) and the worker's attempt protocol (attempts.py).

Every write that a page shows is pushed to the run's group and to the runs list after commit
(`transaction.on_commit`), never before.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from r1lab import live
from r1lab.pipelines.models import PipelineRun, Stage
from training_backend.stage import ExitCode

RUNS_GROUP = "runs"
S = Stage.Status

# The stage state machine. `failed`/`cancelled` → `queued` is a resume or a retry (a new attempt).
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
    S.SUCCEEDED: frozenset(),
}

# The trainer's exit codes, from the worker <-> trainer contract (training_backend.stage).
EXIT_OK, EXIT_CRASH, EXIT_BAD_SPEC, EXIT_STOPPED = ExitCode.OK, ExitCode.CRASH, ExitCode.BAD_SPEC, ExitCode.STOPPED
WORKER_LOST = "worker lost"


class StageTransitionError(ValueError):
    """The stage is not in a state that allows this (e.g. resume a running stage)."""


class PipelineValidationError(ValueError):
    """A run definition that cannot launch; `errors` maps a form field to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


# --- live pushes --------------------------------------------------------------------------------

def run_group_name(run_id: int) -> str:
    return f"run.{run_id}"


def _push(group: str, event: dict) -> None:
    live.group_send(group, event)


def _notify_after_commit(run_id: int) -> None:
    """After commit, send the run's fresh status to its page and to the runs list."""

    def send():
        run = PipelineRun.objects.filter(pk=run_id).first()
        if run is None:
            return
        payload = run.status_payload()
        _push(run_group_name(run_id), {"type": "run.status", "run": payload})
        _push(RUNS_GROUP, {"type": "run.status", "run": payload})

    transaction.on_commit(send)


def pipeline_run_set_status(*, run: PipelineRun, status: str) -> PipelineRun:
    """Write the run's status, then tell the pages watching the run (after commit, never before)."""
    if status not in PipelineRun.Status.values:
        raise ValueError(f"unknown status {status!r}")
    with transaction.atomic():
        run.status = status
        run.save(update_fields=["status", "updated_at"])
        _notify_after_commit(run.pk)
    return run


def _derived_run_status(statuses: list[str]) -> str:
    if not statuses:
        return PipelineRun.Status.PENDING
    if S.RUNNING in statuses:
        return PipelineRun.Status.RUNNING
    if S.QUEUED in statuses:
        return PipelineRun.Status.QUEUED
    if S.FAILED in statuses:
        return PipelineRun.Status.FAILED
    if S.CANCELLED in statuses:
        return PipelineRun.Status.CANCELLED
    if all(s == S.SUCCEEDED for s in statuses):
        return PipelineRun.Status.SUCCEEDED
    if any(s == S.SUCCEEDED for s in statuses):  # between stages: the next one is about to queue
        return PipelineRun.Status.RUNNING
    return PipelineRun.Status.PENDING


def pipeline_run_refresh_status(*, run: PipelineRun) -> PipelineRun:
    """Derive the run's status from its stages and save it (and push) when it changed."""
    status = _derived_run_status(list(run.stages.order_by("index").values_list("status", flat=True)))
    run.status = status
    run.save(update_fields=["status", "updated_at"])  # updated_at moves: the pages see progress too
    _notify_after_commit(run.pk)
    return run


def _transition(stage: Stage, to: str, *, detail: str = "") -> None:
    if to not in TRANSITIONS[stage.status]:
        raise StageTransitionError(f"stage {stage.name!r} is {stage.status}; it cannot become {to}")
    stage.status = to
    stage.status_detail = detail


def stage_dir(stage: Stage) -> Path:
    """Where a stage's attempts and outputs live on the workers' shared disk."""
    return Path(settings.R1LAB_DATA_DIR) / "runs" / str(stage.run_id) / f"stage-{stage.index}-{stage.kind}"

