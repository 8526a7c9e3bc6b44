"""Writes for pipelines: define and launch runs, the stage state machine, cancel/resume/retry,
the worker's side of an attempt (start, heartbeat, finish) and the lost-worker sweep.

Every write that a page shows is pushed to the run's group and to the runs list after commit
(`transaction.on_commit`), never before.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from r1lab.curation import services as curation_services
from r1lab.curation.models import DatasetVersion
from r1lab.pipelines.models import BaseModel, PipelineRun, PromptSet, Stage, StageAttempt
from r1lab.pipelines.stage_templates import MAKE_BASE, PipelineTemplate
from r1lab.tracking.models import Run as TrackedRun
from r1lab.tracking.services import tracked_run_create, tracked_run_set_status
from training_backend.stage import ExitCode, Out

log = logging.getLogger(__name__)

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
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, event)


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


# --- base models and prompt sets -----------------------------------------------------------------

def base_model_register(*, name: str, path: str, parameter_count: int | None = None, notes: str = "") -> BaseModel:
    """Register (or update, by name) a HF model folder as a base model. Idempotent."""
    obj, _ = BaseModel.objects.update_or_create(
        name=name, defaults={"path": str(path), "parameter_count": parameter_count, "notes": notes})
    return obj


def prompt_set_register(*, name: str, kind: str, train_path: str, eval_path: str = "", train_count: int = 0,
                        eval_count: int = 0, user=None, source_name: str = "") -> PromptSet:
    obj, _ = PromptSet.objects.update_or_create(
        name=name, defaults={"kind": kind, "train_path": str(train_path), "eval_path": str(eval_path),
                             "train_count": train_count, "eval_count": eval_count, "created_by": user,
                             "source_name": source_name})
    return obj


def prompt_set_import(*, name: str, kind: str, rows: list[dict], eval_fraction: float, user,
                      source_name: str = "", seed: int = 0) -> PromptSet:
    """Store already-validated rows (prompt_import.parse_prompt_file) as train/eval JSONL files.

    The eval split is a seeded random `eval_fraction` of the rows. All or nothing: the files are
    written before the row is created, and the row only if both were written."""
    import json
    import random

    if PromptSet.objects.filter(name=name).exists():
        raise PipelineValidationError({"name": f"a prompt set named {name!r} exists already"})
    if not rows:
        raise PipelineValidationError({"file": "the file has no rows"})
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = int(round(len(rows) * eval_fraction))
    eval_idx = set(order[:n_eval])
    folder = Path(settings.R1LAB_DATA_DIR) / "prompt_sets" / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = folder / "train.jsonl", folder / "eval.jsonl"
    with train_path.open("w") as tf, eval_path.open("w") as ef:
        for i, row in enumerate(rows):
            (ef if i in eval_idx else tf).write(json.dumps(row) + "\n")
    return PromptSet.objects.create(
        name=name, kind=kind, train_path=str(train_path), eval_path=str(eval_path) if n_eval else "",
        train_count=len(rows) - n_eval, eval_count=n_eval, created_by=user, source_name=source_name)


# --- defining and launching runs ---------------------------------------------------------------

@dataclass(frozen=True)
class StagePlan:
    """One stage to create: its template definition and its validated config dict."""

    kind: str
    name: str
    config: dict
    inputs: dict
    num_gpus: int = 1


def _input_ref(ref: str, *, base_model: BaseModel | None, prompt_set: PromptSet | None,
               dataset_version_id: int | None, offset: int) -> dict:
    if ref == "base":
        return {"from": "base_model", "id": base_model.pk if base_model else None}
    if ref == "prompt_set":
        return {"from": "prompt_set", "id": prompt_set.pk if prompt_set else None}
    if ref == "dataset_version":
        return {"from": "dataset_version", "id": dataset_version_id}
    if ref.startswith("stage:"):
        return {"from": "stage", "index": int(ref.split(":", 1)[1]) + offset}
    raise ValueError(f"unknown input reference {ref!r}")


def pipeline_plan(*, template: PipelineTemplate, configs: list[dict], base_model: BaseModel | None,
                  prompt_set: PromptSet | None, dataset_version_id: int | None = None, num_gpus: int = 1,
                  build_base: bool = False, base_steps: int | None = None,
                  check_paths: bool = True) -> list[StagePlan]:
    """Validate a run definition with the trainer's own dataclasses; the stages to create.

    `configs[i]` holds stage i's config fields (JSON values). Raises PipelineValidationError with
    every problem at once, config errors under `s<i>-<field>`. With `build_base`, a `make_base`
    stage is prepended that writes the base model's folder (so its path need not exist yet).
    """
    from training_backend.config import ConfigError, config_to_dict, parse_config

    errors: dict[str, str] = {}
    missing = template.missing_kinds()
    if missing:
        errors["template"] = (f"{template.label} needs stage kinds this training_backend does not have yet: "
                              f"{', '.join(missing)}")
    if not template.stages:
        errors["template"] = "a pipeline needs at least one stage"
    if base_model is None:
        errors["base_model"] = "choose a base model"
    elif check_paths and not build_base and not Path(base_model.path).is_dir():
        errors["base_model"] = f"the model folder {base_model.path!r} does not exist on the workers' shared disk"
    if template.needs_prompt_set:
        if prompt_set is None:
            errors["prompt_set"] = "choose a prompt set"
        elif check_paths and not Path(prompt_set.train_path).is_file():
            errors["prompt_set"] = f"the prompt file {prompt_set.train_path!r} does not exist on the workers' shared disk"
    if template.needs_dataset_version and dataset_version_id is None:
        errors["dataset_version"] = "choose a dataset version"
    if num_gpus < 1:
        errors["num_gpus"] = "at least 1"
    if len(configs) != len(template.stages):
        errors["template"] = f"{len(template.stages)} stage configs expected, got {len(configs)}"
    plans: list[StagePlan] = []
    offset = 1 if build_base else 0
    if build_base and base_model is not None:
        plans.append(StagePlan(MAKE_BASE, f"Build base model {base_model.name}",
                               {"steps": base_steps} if base_steps else {},
                               {"output_to": {"from": "base_model", "id": base_model.pk}}, 1))
    for i, (sdef, cfg) in enumerate(zip(template.stages, configs)):
        if sdef.kind not in template.missing_kinds() and sdef.kind != MAKE_BASE:
            try:
                parsed = parse_config(sdef.kind, cfg)
            except ConfigError as exc:
                for field, msg in exc.errors.items():
                    errors[f"s{i}-{field}"] = msg
                continue
            config = config_to_dict(parsed)
        else:
            config = dict(cfg)
        inputs = {
            "model": _input_ref(sdef.model, base_model=base_model, prompt_set=prompt_set,
                                dataset_version_id=dataset_version_id, offset=offset),
            "train_data": _input_ref(sdef.data, base_model=base_model, prompt_set=prompt_set,
                                     dataset_version_id=dataset_version_id, offset=offset),
        }
        plans.append(StagePlan(sdef.kind, sdef.name, config, inputs, num_gpus if sdef.kind != MAKE_BASE else 1))
    if errors:
        raise PipelineValidationError(errors)
    return plans


@transaction.atomic
def pipeline_run_create(*, name: str, template_key: str, plans: list[StagePlan], user,
                        base_model: BaseModel | None, prompt_set: PromptSet | None = None,
                        notes: str = "") -> PipelineRun:
    """Create a run and its (pending) stages from validated plans (pipeline_plan)."""
    if not name.strip():
        raise PipelineValidationError({"name": "a run needs a name"})
    run = PipelineRun.objects.create(name=name.strip()[:200], template=template_key, base_model=base_model,
                                     prompt_set=prompt_set, created_by=user, notes=notes)
    for i, plan in enumerate(plans):
        Stage.objects.create(run=run, index=i, name=plan.name, kind=plan.kind, config=plan.config,
                             inputs=plan.inputs, num_gpus=plan.num_gpus)
    return run


@transaction.atomic
def pipeline_run_launch(*, run: PipelineRun, user) -> PipelineRun:
    """Queue the run's first stage (on the gpu queue, after commit). The rest follow on success."""
    first = Stage.objects.select_for_update(of=("self",)).filter(run=run).order_by("index").first()
    if first is None:
        raise StageTransitionError("the run has no stages")
    stage_enqueue(stage=first, user=user)
    return run


def _stage_dir(stage: Stage) -> Path:
    return Path(settings.R1LAB_DATA_DIR) / "runs" / str(stage.run_id) / f"stage-{stage.index}-{stage.kind}"


def _ensure_tracked_run(stage: Stage, user, *, fresh: bool) -> None:
    if stage.kind == MAKE_BASE or (stage.tracked_run_id and not fresh):
        return
    if stage.tracked_run_id and fresh and stage.tracked_run.status == TrackedRun.Status.RUNNING:
        # a retry starts new curves; the old tracked run keeps its own, closed
        tracked_run_set_status(run=stage.tracked_run, status=TrackedRun.Status.FAILED)
    tracked, _raw = tracked_run_create(  # the raw token is minted again by the worker per attempt
        name=f"{stage.run.name} · {stage.name}", project=stage.run.name, user=user, attempt=stage.attempt,
        config={"kind": stage.kind, "stage_id": stage.pk, "pipeline_run_id": stage.run_id, **stage.config})
    stage.tracked_run = tracked


def stage_enqueue(*, stage: Stage, user=None, resume: bool = False, fresh_output: bool = False) -> Stage:
    """pending/failed/cancelled → queued: a new attempt, sent to the gpu queue after commit."""
    from r1lab.pipelines.tasks import GPU_QUEUE, run_stage

    with transaction.atomic():
        stage = Stage.objects.select_for_update(of=("self",)).select_related("run", "tracked_run").get(pk=stage.pk)
        _transition(stage, S.QUEUED)
        stage.attempt += 1
        stage.resume = resume
        stage.cancel_requested = False
        stage.exit_code = None
        stage.finished_at = None
        stage.eta_s = None
        if not resume:
            stage.progress_step = 0
        if not stage.output_dir or fresh_output:
            suffix = "" if stage.attempt == 1 else f"-r{stage.attempt}"
            stage.output_dir = str(_stage_dir(stage) / f"output{suffix}")
        _ensure_tracked_run(stage, user, fresh=fresh_output)
        stage.task_id = str(uuid.uuid4())
        stage.save()
        StageAttempt.objects.create(stage=stage, number=stage.attempt, resume=resume, task_id=stage.task_id,
                                    queued_by=user if getattr(user, "is_authenticated", False) else None)
        pipeline_run_refresh_status(run=stage.run)
        args, task_id = [stage.pk, stage.attempt], stage.task_id
        transaction.on_commit(lambda: run_stage.apply_async(args=args, task_id=task_id, queue=GPU_QUEUE))
    return stage


def stage_cancel(*, stage: Stage, user=None) -> Stage:
    """Queued: revoke and mark cancelled now. Running: flag it; the worker that owns the trainer
    sees the flag on its next heartbeat, sends SIGTERM to the trainer's process group (it writes a
    checkpoint and exits 75) and records `cancelled`. Later pending stages are cancelled too."""
    from r1lab.celery import app

    with transaction.atomic():
        stage = Stage.objects.select_for_update(of=("self",)).select_related("run").get(pk=stage.pk)
        if stage.status == S.RUNNING:
            stage.cancel_requested = True
            stage.status_detail = "cancelling…"
            stage.save(update_fields=["cancel_requested", "status_detail", "updated_at"])
        elif stage.status in (S.QUEUED, S.PENDING):
            was_queued = stage.status == S.QUEUED
            _transition(stage, S.CANCELLED, detail="cancelled before it started" if was_queued else "")
            stage.finished_at = timezone.now()
            stage.save()
            if was_queued:
                StageAttempt.objects.filter(stage=stage, number=stage.attempt).update(
                    outcome=StageAttempt.Outcome.CANCELLED, finished_at=timezone.now())
                task_id = stage.task_id
                # revoke is best effort (the filesystem broker has no broadcast); the task itself
                # finds its attempt cancelled and does nothing.
                transaction.on_commit(lambda: app.control.revoke(task_id))
            if stage.tracked_run_id:
                tracked_run_set_status(run=stage.tracked_run, status=TrackedRun.Status.CANCELLED)
        else:
            raise StageTransitionError(f"stage {stage.name!r} is {stage.status}; there is nothing to cancel")
        for later in Stage.objects.select_for_update(of=("self",)).filter(run=stage.run, index__gt=stage.index, status=S.PENDING):
            _transition(later, S.CANCELLED, detail="an earlier stage was cancelled")
            later.save()
        pipeline_run_refresh_status(run=stage.run)
    return stage


def pipeline_run_cancel(*, run: PipelineRun, user=None) -> PipelineRun:
    """Cancel the run's active stage (and with it the pending ones after it)."""
    active = run.stages.filter(status__in=[S.QUEUED, S.RUNNING]).order_by("index").first()
    if active is None:
        active = run.stages.filter(status=S.PENDING).order_by("index").first()
    if active is None:
        raise StageTransitionError(f"run {run.name!r} is {run.status}; there is nothing to cancel")
    stage_cancel(stage=active, user=user)
    run.refresh_from_db()
    return run


def _reopen_later_stages(stage: Stage) -> None:
    for later in Stage.objects.select_for_update(of=("self",)).filter(run=stage.run, index__gt=stage.index, status=S.CANCELLED):
        later.status, later.status_detail = S.PENDING, ""  # not a state-machine move: it never ran
        later.save(update_fields=["status", "status_detail", "updated_at"])


def _check_earlier_succeeded(stage: Stage) -> None:
    if stage.run.stages.filter(index__lt=stage.index).exclude(status=S.SUCCEEDED).exists():
        raise StageTransitionError("an earlier stage has not succeeded; resume that one first")


def stage_resume(*, stage: Stage, user=None) -> Stage:
    """A failed or cancelled stage continues from its latest checkpoint in a new attempt: same
    output dir, same tracked run, `--resume`, so step numbers continue where they stopped."""
    with transaction.atomic():
        stage = Stage.objects.select_for_update(of=("self",)).select_related("run").get(pk=stage.pk)
        if stage.status not in (S.FAILED, S.CANCELLED):
            raise StageTransitionError(f"stage {stage.name!r} is {stage.status}; only a failed or cancelled stage resumes")
        _check_earlier_succeeded(stage)
        has_checkpoint = stage.kind != MAKE_BASE and stage.output_dir and any(
            (Path(stage.output_dir) / "checkpoints").glob("step-*"))
        _reopen_later_stages(stage)
        return stage_enqueue(stage=stage, user=user, resume=bool(has_checkpoint))


def stage_retry(*, stage: Stage, user=None) -> Stage:
    """A failed or cancelled stage starts again from scratch: a fresh output dir and tracked run."""
    with transaction.atomic():
        stage = Stage.objects.select_for_update(of=("self",)).select_related("run").get(pk=stage.pk)
        if stage.status not in (S.FAILED, S.CANCELLED):
            raise StageTransitionError(f"stage {stage.name!r} is {stage.status}; only a failed or cancelled stage is retried")
        _check_earlier_succeeded(stage)
        _reopen_later_stages(stage)
        return stage_enqueue(stage=stage, user=user, resume=False, fresh_output=True)


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
        elif src == "stage":
            prev = Stage.objects.filter(run_id=stage.run_id, index=ref["index"]).first()
            if prev is None or prev.status != S.SUCCEEDED:
                raise StageTransitionError(f"{key}: stage {ref['index']} has not succeeded")
            field = Out.FINAL_MODEL if key == "model" else Out.DATASET
            path = (prev.outputs or {}).get(field)
            if not path:
                raise StageTransitionError(f"{key}: stage {prev.name!r} has no {field} in its outputs")
            out[key] = {"from": src, "index": prev.index, "stage_id": prev.pk, "label": prev.name, "path": path}
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
        attempt_dir = _stage_dir(stage) / f"attempt-{attempt}"
        try:
            resolved = _resolve_inputs(stage, exports)
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
            pipeline_run_refresh_status(run=stage.run)
            lost.append(stage.pk)
            log.warning("stage %s (%s) marked failed: worker lost (no heartbeat since %s)",
                        stage.pk, stage.name, stage.heartbeat_at)
    return lost
