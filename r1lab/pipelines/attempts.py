"""The worker's side of a stage attempt: start (queued → running, inputs resolved), heartbeat
(progress, cancel relay), finish (the trainer's exit code → the stage's status, the next stage
queued, lineage recorded) and the sweep that fails stages whose worker is lost.

Runs in the Celery worker (runner.py calls these); every write is pushed after commit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from r1lab.curation import services as curation_services
from r1lab.curation.models import DatasetVersion
from r1lab.pipelines.models import BaseModel, PromptSet, Stage, StageAttempt
from r1lab.pipelines.services import fork_snapshot_path, stage_enqueue
from r1lab.pipelines.stage_templates import MAKE_BASE
from r1lab.pipelines.state_machine import (EXIT_BAD_SPEC, EXIT_OK, EXIT_STOPPED, S, WORKER_LOST, StageTransitionError,
                                           _notify_after_commit, _transition, pipeline_run_refresh_status, stage_dir)
from r1lab.tracking.alert_services import stage_alert
from r1lab.tracking.models import Run as TrackedRun
from r1lab.tracking.services import tracked_run_set_status
from training_backend.stage import TRAINER_STATE, Out, checkpoint_dirs, checkpoint_path, link_checkpoint

log = logging.getLogger(__name__)


# --- the worker's side of an attempt -------------------------------------------------------------

@dataclass(frozen=True)
class AttemptStart:
    """What the worker needs to start the trainer, as decided at start (inside the lock)."""

    stage_id: int
    run_id: int
    attempt: int
    kind: str
    config: dict
    num_gpus: int
    resume: bool
    output_dir: str
    attempt_dir: str
    model_path: str
    train_data: str | None
    eval_data: str | None
    tracked_run_id: int | None


def _export_dataset_versions(stage_id: int) -> dict[int, tuple[str, str]]:
    """{version id: (label, JSONL path)} of the dataset versions the stage trains on, exported by
    curation before the stage's row is locked: writing a large file must not hold the lock."""
    refs = (Stage.objects.filter(pk=stage_id).values_list("inputs", flat=True).first() or {}).values()
    out: dict[int, tuple[str, str]] = {}
    for ref in refs:
        if ref.get("from") != "dataset_version":
            continue
        version = DatasetVersion.objects.select_related("project").filter(pk=ref.get("id")).first()
        if version is not None:
            out[version.pk] = (version.label, str(curation_services.dataset_version_export_path(version=version)))
    return out


def _resolve_inputs(stage: Stage, exports: dict[int, tuple[str, str]]) -> dict:
    """Inputs → paths and lineage labels. Raises StageTransitionError when one is missing."""
    out: dict = {}
    for key, ref in (stage.inputs or {}).items():
        src = ref.get("from")
        if src == "base_model":
            bm = BaseModel.objects.filter(pk=ref.get("id")).first()
            if bm is None:
                raise StageTransitionError(f"{key}: the base model is gone")
            out[key] = {"from": src, "id": bm.pk, "label": bm.name, "path": bm.path}
        elif src == "prompt_set":
            ps = PromptSet.objects.filter(pk=ref.get("id")).first()
            if ps is None:
                raise StageTransitionError(f"{key}: the prompt set is gone")
            out[key] = {"from": src, "id": ps.pk, "label": ps.name, "path": ps.train_path,
                        "eval_path": ps.eval_path or None}
        elif src == "dataset_version":
            if ref.get("id") not in exports:
                raise StageTransitionError(f"{key}: dataset version {ref.get('id')} is not available")
            label, path = exports[ref["id"]]
            out[key] = {"from": src, "id": ref["id"], "label": label, "path": path}
        elif src in ("stage", "stage_output"):  # an earlier stage of this run, or any run's stage by id (a fork's)
            if src == "stage":
                prev = Stage.objects.filter(run_id=stage.run_id, index=ref["index"]).first()
            else:
                prev = Stage.objects.select_related("run").filter(pk=ref.get("stage_id")).first()
            if prev is None or prev.status != S.SUCCEEDED:
                raise StageTransitionError(f"{key}: stage {ref.get('index', ref.get('stage_id'))} has not succeeded")
            field = Out.FINAL_MODEL if key == "model" else Out.DATASET
            path = (prev.outputs or {}).get(field)
            if not path:
                raise StageTransitionError(f"{key}: stage {prev.name!r} has no {field} in its outputs")
            label = prev.name if src == "stage" else f"{prev.run.name} · {prev.name}"
            out[key] = {"from": src, "index": prev.index, "stage_id": prev.pk, "label": label, "path": path}
        elif src == "checkpoint":  # a fork: its snapshot of the parent's checkpoint (services.stage_fork)
            step = int(ref["step"])
            path = fork_snapshot_path(stage, step)
            if not (path / TRAINER_STATE).exists():
                raise StageTransitionError(f"{key}: the fork's snapshot of checkpoint step {step} is gone ({path})")
            parent = Stage.objects.select_related("run").filter(pk=ref.get("stage_id")).first()
            label = f"{parent.run.name} · {parent.name} @ step {step}" if parent else f"checkpoint step {step}"
            out[key] = {"from": src, "stage_id": ref.get("stage_id"), "step": step, "label": label, "path": str(path)}
        else:
            raise StageTransitionError(f"{key}: unknown input {ref!r}")
    return out


def stage_attempt_start(*, stage_id: int, attempt: int, worker_host: str, worker_pid: int) -> AttemptStart | None:
    """queued → running for this attempt, or None when there is nothing to do (the message is a
    redelivery of an attempt already started or finished, or the stage was cancelled meanwhile)."""
    exports = _export_dataset_versions(stage_id)
    with transaction.atomic():
        stage = Stage.objects.select_for_update(of=("self",)).select_related("run").filter(pk=stage_id).first()
        if stage is None or stage.attempt != attempt or stage.status != S.QUEUED:
            return None
        att = StageAttempt.objects.select_for_update(of=("self",)).filter(stage=stage, number=attempt).first()
        if att is None or att.outcome != StageAttempt.Outcome.QUEUED:
            return None
        now = timezone.now()
        attempt_dir = stage_dir(stage) / f"attempt-{attempt}"
        try:
            resolved = _resolve_inputs(stage, exports)
            resume = _start_from_fork_checkpoint(stage, resolved) or stage.resume
        except StageTransitionError as exc:
            _transition(stage, S.FAILED, detail=str(exc)[:200])
            stage.finished_at = now
            stage.save()
            att.outcome, att.finished_at = StageAttempt.Outcome.FAILED, now
            att.save()
            pipeline_run_refresh_status(run=stage.run)
            return None
        _transition(stage, S.RUNNING)
        stage.resolved_inputs = resolved
        stage.resume = att.resume = resume
        stage.worker_host = worker_host
        stage.started_at = stage.started_at if stage.resume and stage.started_at else now
        stage.heartbeat_at = now
        stage.log_path = str(attempt_dir / "trainer.log")
        stage.save()
        att.outcome, att.started_at = StageAttempt.Outcome.RUNNING, now
        att.worker_host, att.worker_pid, att.log_path = worker_host, worker_pid, stage.log_path
        att.save()
        if stage.tracked_run_id:
            tracked_run_set_status(run=stage.tracked_run, status=TrackedRun.Status.RUNNING)
        pipeline_run_refresh_status(run=stage.run)
        model = resolved.get("model", {})
        data = resolved.get("train_data", {})
        output_dir = stage.output_dir
        if stage.kind == MAKE_BASE:
            output_dir = resolved.get("output_to", {}).get("path", stage.output_dir)
        return AttemptStart(
            stage_id=stage.pk, run_id=stage.run_id, attempt=attempt, kind=stage.kind, config=stage.config,
            num_gpus=stage.num_gpus, resume=stage.resume, output_dir=output_dir, attempt_dir=str(attempt_dir),
            model_path=model.get("path", ""), train_data=data.get("path"), eval_data=data.get("eval_path"),
            tracked_run_id=stage.tracked_run_id)


def _start_from_fork_checkpoint(stage: Stage, resolved: dict) -> bool:
    """True for a fork: every attempt of it resumes (`--resume`), never trains from its model input.
    When its output folder holds no checkpoint yet (its first attempt, a retry's fresh folder) its
    snapshot of the parent's is linked in as its own checkpoint of that step, so the trainer starts
    from it (weights, optimizer, step counter k: the curve from k + 1); later attempts resume from
    the fork's own latest checkpoint."""
    ck = resolved.get("checkpoint")
    if not ck:
        return False
    if not checkpoint_dirs(stage.output_dir):
        try:
            link_checkpoint(ck["path"], checkpoint_path(stage.output_dir, ck["step"]))
        except OSError as exc:
            raise StageTransitionError(f"checkpoint: cannot place the forked checkpoint in {stage.output_dir}: {exc}") from None
    return True


def stage_attempt_set_trainer_pid(*, stage_id: int, attempt: int, pid: int) -> None:
    StageAttempt.objects.filter(stage_id=stage_id, number=attempt).update(trainer_pid=pid)


def stage_heartbeat(*, stage_id: int, attempt: int, step: int | None = None, total: int | None = None,
                    eta_s: float | None = None, progress_changed: bool = False, first_step: int | None = None) -> str:
    """The worker is alive and the trainer at `step`. Returns "ok", "cancel" (the user asked to
    cancel) or "gone" (this attempt is no longer the running one, e.g. marked worker lost)."""
    fields: dict = {"heartbeat_at": timezone.now(), "updated_at": timezone.now()}
    if step is not None:
        fields["progress_step"] = step
    if total is not None:
        fields["progress_total"] = total
    if eta_s is not None:
        fields["eta_s"] = eta_s
    with transaction.atomic():
        n = Stage.objects.filter(pk=stage_id, attempt=attempt, status=S.RUNNING).update(**fields)
        if not n:
            return "gone"
        if step is not None:
            att = StageAttempt.objects.filter(stage_id=stage_id, number=attempt)
            # The first step the trainer printed, not the one current at this (possibly later) beat.
            att.filter(first_step__isnull=True).update(first_step=step if first_step is None else first_step)
            att.update(last_step=step)
        stage = Stage.objects.only("cancel_requested", "run_id").get(pk=stage_id)
        if progress_changed:
            _notify_after_commit(stage.run_id)
    return "cancel" if stage.cancel_requested else "ok"


def stage_attempt_finish(*, stage_id: int, attempt: int, exit_code: int, outputs: dict | None,
                         signalled_cancel: bool) -> Stage | None:
    """Record how the trainer ended and, on success, queue the next stage with these outputs.

    exit 0 → succeeded; 75 after our SIGTERM (cancel) → cancelled; 75 otherwise → failed (stopped,
    resumable); 2 → failed (bad spec); anything else → failed (crashed). None when the attempt was
    already finished by someone else (e.g. marked worker lost while the worker was stalled)."""
    now = timezone.now()
    with transaction.atomic():
        stage = Stage.objects.select_for_update(of=("self",)).select_related("run", "tracked_run").filter(pk=stage_id).first()
        if stage is None or stage.attempt != attempt or stage.status != S.RUNNING:
            return None
        stage.exit_code = exit_code
        stage.finished_at = now
        stage.heartbeat_at = now
        stage.eta_s = None
        if outputs:
            stage.outputs = outputs
        if exit_code == EXIT_OK:
            to, detail, outcome, tracked = S.SUCCEEDED, "", StageAttempt.Outcome.SUCCEEDED, TrackedRun.Status.SUCCEEDED
            stage.progress_step = max(stage.progress_step, stage.progress_total)
        elif signalled_cancel or stage.cancel_requested:
            to, detail, outcome, tracked = S.CANCELLED, "cancelled", StageAttempt.Outcome.CANCELLED, TrackedRun.Status.CANCELLED
        elif exit_code == EXIT_STOPPED:
            to, detail, outcome, tracked = S.FAILED, "stopped (SIGTERM) after a checkpoint", StageAttempt.Outcome.FAILED, TrackedRun.Status.FAILED
        elif exit_code == EXIT_BAD_SPEC:
            to, detail, outcome, tracked = S.FAILED, "bad spec (exit 2, see the log)", StageAttempt.Outcome.FAILED, TrackedRun.Status.FAILED
        else:
            to, detail, outcome, tracked = S.FAILED, f"trainer crashed (exit {exit_code})", StageAttempt.Outcome.FAILED, TrackedRun.Status.CRASHED
        _transition(stage, to, detail=detail)
        stage.cancel_requested = False
        stage.save()
        StageAttempt.objects.filter(stage=stage, number=attempt).update(outcome=outcome, exit_code=exit_code, finished_at=now)
        if stage.tracked_run_id:
            tracked_run_set_status(run=stage.tracked_run, status=tracked)
            if to == S.FAILED:  # the project's alarm (webhook, e-mail), sent after commit
                stage_alert(run=stage.tracked_run, failed_detail=detail, crashed=tracked == TrackedRun.Status.CRASHED,
                            attempt=attempt, step=stage.progress_step)
        if to == S.CANCELLED:
            for later in Stage.objects.select_for_update(of=("self",)).filter(run=stage.run, index__gt=stage.index, status=S.PENDING):
                _transition(later, S.CANCELLED, detail="an earlier stage was cancelled")
                later.save()
        if to == S.SUCCEEDED:
            _record_dataset_use(stage)
            nxt = Stage.objects.filter(run=stage.run, index=stage.index + 1, status=S.PENDING).first()
            if nxt is not None:
                stage_enqueue(stage=nxt, user=None)
        pipeline_run_refresh_status(run=stage.run)
    return stage


def _record_dataset_use(stage: Stage) -> None:
    """Lineage on curation's side: this stage trained on that dataset version, giving this checkpoint."""
    for ref in (stage.inputs or {}).values():
        if ref.get("from") != "dataset_version":
            continue
        version = DatasetVersion.objects.filter(pk=ref.get("id")).first()
        if version is not None:
            curation_services.dataset_version_record_use(version=version, consumer=f"run {stage.run_id} · stage {stage.index} {stage.name}",
                                       checkpoint=(stage.outputs or {}).get(Out.FINAL_MODEL) or "")


def stages_mark_lost(*, timeout_s: float | None = None) -> list[int]:
    """Running stages whose worker has not heartbeated for `timeout_s` (default
    settings.R1LAB_HEARTBEAT_TIMEOUT_S): `failed (worker lost)`, tracked run `crashed`. They can
    be resumed. Returns their ids."""
    timeout_s = settings.R1LAB_HEARTBEAT_TIMEOUT_S if timeout_s is None else timeout_s
    cutoff = timezone.now() - timedelta(seconds=timeout_s)
    lost: list[int] = []
    with transaction.atomic():
        stale = (Stage.objects.select_for_update(skip_locked=True, of=("self",)).select_related("run", "tracked_run")
                 .filter(status=S.RUNNING, heartbeat_at__lt=cutoff))
        for stage in stale:
            _transition(stage, S.FAILED, detail=WORKER_LOST)
            stage.finished_at = timezone.now()
            stage.eta_s = None
            stage.save()
            StageAttempt.objects.filter(stage=stage, number=stage.attempt).update(
                outcome=StageAttempt.Outcome.WORKER_LOST, finished_at=timezone.now())
            if stage.tracked_run_id:
                tracked_run_set_status(run=stage.tracked_run, status=TrackedRun.Status.CRASHED)
                stage_alert(run=stage.tracked_run, failed_detail=WORKER_LOST, crashed=True, attempt=stage.attempt,
                            step=stage.progress_step)
            pipeline_run_refresh_status(run=stage.run)
            lost.append(stage.pk)
            log.warning("stage %s (%s) marked failed: worker lost (no heartbeat since %s)",
                        stage.pk, stage.name, stage.heartbeat_at)
    return lost
