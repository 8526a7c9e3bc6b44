"""Writes for pipelines, the user's side: register base models and prompt sets, define and launch
runs, cancel, resume and retry stages. The worker's side of an attempt is attempts.py; the
state machine and live status both use is state_machine.py.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from r1lab.pipelines.model_check import FolderRefused, inspect_model_folder
from r1lab.pipelines.models import BaseModel, PipelineRun, PromptSet, Stage, StageAttempt
from r1lab.pipelines.stage_templates import MAKE_BASE, PipelineTemplate
from r1lab.pipelines.state_machine import (S, PipelineValidationError, StageTransitionError, _transition,
                                           pipeline_run_refresh_status, stage_dir)
from r1lab.tracking.models import Run as TrackedRun
from r1lab.tracking.services import tracked_run_create, tracked_run_set_status
from training_backend.stage import Info

log = logging.getLogger(__name__)


# --- base models and prompt sets -----------------------------------------------------------------

def _inspect(path: str) -> dict:
    try:
        return inspect_model_folder(path)
    except FolderRefused as exc:
        raise PipelineValidationError({"path": str(exc)}) from None


def base_model_register(*, name: str, path: str, notes: str = "") -> BaseModel:
    """Register (or update, by name) a HF model folder as a base model, with what the trainer's
    own loading finds in it (model_check: architecture, parameters, dtype, context, vocabulary,
    chat template, previews). A folder transformers cannot load raises PipelineValidationError
    with the reason on `path`, and nothing is stored."""
    info = _inspect(path)
    obj, _ = BaseModel.objects.update_or_create(
        name=name, defaults={"path": str(path), "parameter_count": info.get(Info.PARAMETERS), "notes": notes,
                             "info": info, "checked_at": timezone.now()})
    return obj


def base_model_register_unbuilt(*, name: str, path: str, parameter_count: int | None = None,
                                notes: str = "") -> BaseModel:
    """Register (or update, by name) a folder a stage has yet to build (the demo's tiny base, made by
    its run's first stage): nothing to inspect yet; `base_model_check` reads it once it exists.
    Registering it again keeps what a check found, unless the path changed."""
    obj, created = BaseModel.objects.get_or_create(
        name=name, defaults={"path": str(path), "parameter_count": parameter_count, "notes": notes})
    if not created and (obj.path != str(path) or obj.notes != notes):
        if obj.path != str(path):  # another folder: what was found in the old one says nothing about it
            obj.info, obj.checked_at, obj.parameter_count = {}, None, parameter_count
        obj.path, obj.notes = str(path), notes
        obj.save(update_fields=["path", "notes", "info", "checked_at", "parameter_count"])
    return obj


def base_model_check(*, base_model: BaseModel) -> BaseModel:
    """Inspect a registered model's folder again and store what is there now. A folder that no
    longer loads raises PipelineValidationError and the stored info is left as it was."""
    info = _inspect(base_model.path)
    base_model.info, base_model.checked_at = info, timezone.now()
    base_model.parameter_count = info.get(Info.PARAMETERS)
    base_model.save(update_fields=["info", "checked_at", "parameter_count"])
    return base_model


def prompt_set_register(*, name: str, kind: str, train_path: str, eval_path: str = "", train_count: int = 0,
                        eval_count: int = 0, user=None, source_name: str = "") -> PromptSet:
    obj, _ = PromptSet.objects.update_or_create(
        name=name, defaults={"kind": kind, "train_path": str(train_path), "eval_path": str(eval_path),
                             "train_count": train_count, "eval_count": eval_count, "created_by": user,
                             "source_name": source_name})
    return obj


def prompt_set_import(*, name: str, kind: str, rows: list[dict], eval_fraction: float, user,
                      source_name: str = "", seed: int = 0, source_run: TrackedRun | None = None,
                      source_class: str = "", source_step: int | None = None) -> PromptSet:
    """Store already-validated rows (prompt_import.parse_prompt_file) as train/eval JSONL files.

    The eval split is a seeded random `eval_fraction` of the rows. All or nothing: the files are
    written before the row is created, and the row only if both were written. `source_*`: the
    run (and class, step) a set exported from a prompt lineage came from."""
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
        train_count=len(rows) - n_eval, eval_count=n_eval, created_by=user, source_name=source_name,
        source_run=source_run, source_class=source_class, source_step=source_step)


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
    fork = (stage.inputs or {}).get("checkpoint") or {}
    parent_run_id = (Stage.objects.filter(pk=fork.get("stage_id")).values_list("tracked_run_id", flat=True).first()
                     if fork.get("from") == "checkpoint" else None)
    tracked, _raw = tracked_run_create(  # the raw token is minted again by the worker per attempt
        name=f"{stage.run.name} · {stage.name}", project=stage.run.name, user=user, attempt=stage.attempt,
        config={"kind": stage.kind, "template": stage.run.template, "stage_id": stage.pk, "pipeline_run_id": stage.run_id,
                **stage.config},  # `template`: what the runs list's query `template = "r1_zero"` reads
        forked_from_id=parent_run_id, forked_at_step=fork.get("step") if parent_run_id else None)
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


# --- fork a stage at a checkpoint ------------------------------------------------------------------
# A fork is a new pipeline run of one stage that continues a stage from its checkpoint at step k
# with an edited config. Its trainer resumes from that checkpoint (weights, optimizer moments,
# step counter: its curve starts at k + 1, in a tracked run of its own, so the parent's is never
# rewound); its model input stays the parent's (the reference policy GRPO's KL is measured
# against), its data the parent's unless another set is picked.
#
# The checkpoint is snapshotted when the fork is made, by hard links (training_backend.stage.
# link_checkpoint) into the fork's stage folder: referencing the parent's folder would break when
# the parent's rotation (save_total_limit) deletes it before the fork starts or resumes, and a
# copy would double the disk for a large model; linked files cost nothing and outlive the
# parent's deletion. Each attempt of the fork starts from it (attempts._resolve_inputs).

FORK_SNAPSHOT_DIR = "fork-from"
# Config fields a fork may not change: the checkpoint's optimizer state is in that engine's format.
FORK_FIXED_FIELDS = ("engine", "zero_stage")


def fork_snapshot_path(stage: Stage, step: int) -> Path:
    return stage_dir(stage) / FORK_SNAPSHOT_DIR / f"step-{int(step):06d}"


def fork_checkpoint(*, parent: Stage, step: int) -> Path:
    """The parent's checkpoint folder of `step`, complete on the shared disk; PipelineValidationError
    (naming the steps that can be forked) when there is none, e.g. deleted by rotation."""
    from training_backend.stage import checkpoint_dirs, checkpoint_step

    on_disk = {checkpoint_step(p): p for p in checkpoint_dirs(parent.output_dir)} if parent.output_dir else {}
    if step not in on_disk:
        have = ", ".join(str(s) for s in sorted(on_disk)) or "none"
        raise PipelineValidationError({"step": f"stage {parent.name!r} has no checkpoint of step {step} on disk (rotation "
                                               f"keeps save_total_limit of them); steps that can be forked: {have}"})
    return on_disk[step]


def _retarget(ref: dict, parent: Stage) -> dict:
    """An input of the parent as the fork's: a reference to a stage of the parent's run (by index)
    becomes one to that stage itself, which the fork's own run does not have."""
    if ref.get("from") == "stage":
        other = Stage.objects.filter(run_id=parent.run_id, index=ref.get("index")).only("id").first()
        return {"from": "stage_output", "stage_id": other.pk if other else None}
    return dict(ref)


def stage_fork_plan(*, parent: Stage, step: int, config: dict, prompt_set: PromptSet | None = None,
                    dataset_version_id: int | None = None, num_gpus: int | None = None) -> StagePlan:
    """Validate a fork of `parent` at its checkpoint `step` with `config` (the fork form's values);
    the stage to create. PipelineValidationError with every problem at once (config errors under
    `s0-<field>`, as the launch form's)."""
    from training_backend.config import ConfigError, config_to_dict, parse_config

    errors: dict[str, str] = {}
    try:
        fork_checkpoint(parent=parent, step=step)
    except PipelineValidationError as exc:
        errors.update(exc.errors)
    parsed = None
    try:
        parsed = parse_config(parent.kind, config)
    except ConfigError as exc:
        errors.update({f"s0-{field}": msg for field, msg in exc.errors.items()})
    if parsed is not None:
        cfg = config_to_dict(parsed)
        for name in FORK_FIXED_FIELDS:
            if name in cfg and name in parent.config and cfg[name] != parent.config[name]:
                errors[f"s0-{name}"] = (f"the checkpoint holds {parent.config[name]!r} optimizer state: a fork continues it, "
                                        f"so {name} stays {parent.config[name]!r}")
        if cfg.get("max_steps") and cfg["max_steps"] <= step:
            errors["s0-max_steps"] = f"must be more than {step}: the fork continues after step {step}"
    if num_gpus is not None and num_gpus < 1:
        errors["num_gpus"] = "at least 1"
    if errors:
        raise PipelineValidationError(errors)
    inputs = {role: _retarget(ref, parent) for role, ref in (parent.inputs or {}).items() if role != "checkpoint"}
    data = inputs.get("train_data") or {}
    if data.get("from") == "prompt_set" and prompt_set is not None:
        inputs["train_data"] = {"from": "prompt_set", "id": prompt_set.pk}
    if data.get("from") == "dataset_version" and dataset_version_id is not None:
        inputs["train_data"] = {"from": "dataset_version", "id": dataset_version_id}
    inputs["checkpoint"] = {"from": "checkpoint", "stage_id": parent.pk, "step": int(step)}
    return StagePlan(parent.kind, f"{parent.name} · fork @ {step}", config_to_dict(parsed), inputs,
                     num_gpus or parent.num_gpus)


def stage_fork(*, parent: Stage, step: int, plan: StagePlan, name: str, user) -> PipelineRun:
    """Create and launch the fork: a new pipeline run of one stage, its snapshot of the parent's
    checkpoint `step`, the stage queued. All or nothing: a failure leaves no run and no snapshot."""
    from training_backend.stage import link_checkpoint

    source = fork_checkpoint(parent=parent, step=step)
    prompt_set = None
    if (plan.inputs.get("train_data") or {}).get("from") == "prompt_set":
        prompt_set = PromptSet.objects.filter(pk=plan.inputs["train_data"]["id"]).first()
    snapshot = None
    try:
        with transaction.atomic():
            run = pipeline_run_create(name=name, template_key="fork", plans=[plan], user=user,
                                      base_model=parent.run.base_model, prompt_set=prompt_set,
                                      notes=f"Fork of {parent.run.name} · {parent.name} at step {step}.")
            stage = run.stages.get()
            snapshot = fork_snapshot_path(stage, step)
            link_checkpoint(source, snapshot)
            pipeline_run_launch(run=run, user=user)
    except BaseException:
        if snapshot is not None:
            shutil.rmtree(snapshot.parent, ignore_errors=True)
        raise
    return run
