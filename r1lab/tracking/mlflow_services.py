"""Writes of the MLflow tracking protocol: experiment ids of projects, runs created, updated and
logged to through it.

Metrics go through `services.tracked_run_log`, the one ingest path (same store, same idempotent
retries, same live push after commit). Params are the run's config and, as in MLflow, never
change once logged; tags are the run's `tags` (a later value replaces an earlier one), except
`mlflow.runName`, which is the run's name, and `mlflow.note.content`, its notes.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.db import IntegrityError, transaction

from r1lab.tracking import services
from r1lab.tracking.mlflow_protocol import EXISTS, INVALID, NOT_FOUND, NOTE_TAG, RUN_NAME_TAG, Batch, MlflowError
from r1lab.tracking.mlflow_selectors import (
    DEFAULT_PROJECT, param_str, project_exists, project_of_experiment, project_of_name,
)
from r1lab.tracking.models import MlflowExperiment, Run


def mlflow_experiment_ids(*, projects: Iterable[str]) -> dict[str, int]:
    """The MLflow id of each project, giving one to projects that have none yet: a project whose
    runs came from a pipeline or /api/v1 gets its id the first time an MLflow client asks."""
    names = set(projects)
    out = {DEFAULT_PROJECT: 0} if DEFAULT_PROJECT in names else {}
    names.discard(DEFAULT_PROJECT)
    if not names:
        return out
    found = dict(MlflowExperiment.objects.filter(name__in=names).values_list("name", "id"))
    missing = names - set(found)
    if missing:
        MlflowExperiment.objects.bulk_create([MlflowExperiment(name=n) for n in sorted(missing)], ignore_conflicts=True)
        found = dict(MlflowExperiment.objects.filter(name__in=names).values_list("name", "id"))
    out.update(found)
    return out


def mlflow_experiment_create(*, name: str, tags: dict[str, str]) -> int:
    """A new experiment (an r1lab project that has no runs yet); RESOURCE_ALREADY_EXISTS when the
    project exists, as MLflow answers for a taken name."""
    if project_exists(project=project_of_name(name)):
        raise MlflowError(EXISTS, f"Experiment(name={name}) already exists.")
    try:
        with transaction.atomic():
            return MlflowExperiment.objects.create(name=name, tags=tags).pk
    except IntegrityError:  # created by a concurrent request
        raise MlflowError(EXISTS, f"Experiment(name={name}) already exists.") from None


def mlflow_run_create(*, user, experiment_id: int, name: str, tags: dict[str, str]) -> Run:
    """An external run in the experiment's project; a run created without a name gets one."""
    project = project_of_experiment(experiment_id=experiment_id)
    if project is None:
        raise MlflowError(NOT_FOUND, f"No Experiment with id={experiment_id} exists")
    tags = dict(tags)
    tags.pop(RUN_NAME_TAG, None)
    notes = tags.pop(NOTE_TAG, None)
    with transaction.atomic():
        run, _token = services.tracked_run_create(name=name or f"mlflow-{secrets.token_hex(3)}", project=project,
                                                  user=user, external=True)
        # The ingest token stays unused: MLflow clients write with their personal token.
        fields = {}
        if tags:
            fields["tags"] = tags
        if notes:
            fields["notes"] = notes
        if fields:
            Run.objects.filter(pk=run.pk).update(**fields)
            for k, v in fields.items():
                setattr(run, k, v)
    return run


def mlflow_run_log(*, run: Run, batch: Batch) -> dict:
    """Params, tags and metrics of one request, all or nothing. A param logged again with another
    value is refused (MLflow's rule); with the same value it is a no-op (a retry)."""
    if not batch.params and not batch.tags:
        # The hot path (a trainer's log_metrics): tracked_run_log's own transaction is the whole
        # write; an outer one would only add a savepoint's two round trips to every call.
        if not batch.metrics.steps:
            return {"metrics": 0}
        return services.tracked_run_log(run_id=run.pk, parsed=batch.metrics)["stored"]
    with transaction.atomic():
        locked = Run.objects.select_for_update().only("id", "config", "tags", "name", "notes").get(pk=run.pk)
        update = []
        config = dict(locked.config or {})
        for key, value in batch.params.items():
            if key not in config:
                config[key] = value
            elif param_str(config[key]) != value:
                old = param_str(config[key])
                raise MlflowError(INVALID, (
                    f"Changing param values is not allowed. Param with key='{key}' was already logged with "
                    f"value='{old[:200]}' for run ID='{run.pk}'. Attempted logging new value '{value[:200]}'."))
        if config != locked.config:
            locked.config = config
            update.append("config")
        tags = dict(locked.tags or {})
        for key, value in batch.tags.items():
            if key == RUN_NAME_TAG:
                if value.strip() and value.strip() != locked.name:
                    locked.name = value.strip()
                    update.append("name")
            elif key == NOTE_TAG:
                locked.notes = value
                update.append("notes")
            else:
                tags[key] = value
        if tags != locked.tags:
            locked.tags = tags
            update.append("tags")
        if update:
            locked.save(update_fields=update)
        result = {"metrics": 0}
        if batch.metrics.steps:  # a SeriesLimitError here takes the params and tags back too
            result = services.tracked_run_log(run_id=run.pk, parsed=batch.metrics)["stored"]
    return result


def mlflow_run_update(*, run: Run, status: str | None = None, name: str | None = None) -> Run:
    """`runs/update`: a new name and/or status (FINISHED/FAILED/KILLED finish the run; RUNNING
    reopens it, as `mlflow.start_run(run_id=…)` does when a trainer resumes)."""
    with transaction.atomic():
        if name and name != run.name:
            Run.objects.filter(pk=run.pk).update(name=name)
            run.name = name
        if status == Run.Status.RUNNING:
            if run.status != Run.Status.RUNNING:
                run = services.tracked_run_set_status(run=run, status=status)
        elif status is not None:
            run = services.tracked_run_finish(run=run, status=status)
    return run
