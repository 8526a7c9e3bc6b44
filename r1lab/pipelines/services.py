"""Writes for pipelines, the user's side: register base models and prompt sets, define and launch
runs, cancel, resume and retry stages. The worker's side of an attempt is attempts.py; the
state machine and live status both use is state_machine.py.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from r1lab.pipelines.models import BaseModel, PipelineRun, PromptSet, Stage, StageAttempt
from r1lab.pipelines.stage_templates import MAKE_BASE, PipelineTemplate
from r1lab.pipelines.state_machine import (S, PipelineValidationError, StageTransitionError, _transition,
                                           pipeline_run_refresh_status, stage_dir)
from r1lab.tracking.models import Run as TrackedRun
from r1lab.tracking.services import tracked_run_create, tracked_run_set_status

log = logging.getLogger(__name__)


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


def _ensure_tracked_run(stage: Stage, user, *, fresh: bool) -> None:
    if stage.kind == MAKE_BASE or (stage.tracked_run_id and not fresh):
        return
    if stage.tracked_run_id and fresh and stage.tracked_run.status == TrackedRun.Status.RUNNING:
        # a retry starts new curves; the old tracked run keeps its own, closed
        tracked_run_set_status(run=stage.tracked_run, status=TrackedRun.Status.FAILED)
    tracked, _raw = tracked_run_create(  # the raw token is minted again by the worker per attempt
        name=f"{stage.run.name} · {stage.name}", project=stage.run.name, user=user, attempt=stage.attempt,
        config={"kind": stage.kind, "template": stage.run.template, "stage_id": stage.pk, "pipeline_run_id": stage.run_id,
                **stage.config})  # `template`: what the runs list's query `template = "r1_zero"` reads
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
            stage.output_dir = str(stage_dir(stage) / f"output{suffix}")
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
