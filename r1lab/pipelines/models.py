"""Base models, prompt sets, pipeline runs and their stages (with attempts).

A `PipelineRun` is made from a template (pipelines.stage_templates): a list of `Stage`s, each a
kind (a key of training_backend.config.STAGE_CONFIGS, or the built-in `make_base`), a config
validated by the trainer's own dataclass, and inputs that name where its model and data come from
(a base model, an earlier stage's output, a prompt set, a dataset version). `Stage.status` moves
through the state machine in state_machine.TRANSITIONS; each (re)start is a numbered `StageAttempt`.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class BaseModel(models.Model):
    """A HF model folder on the workers' shared disk that stages can start from.

    `info` is what `python -m training_backend inspect-model` found when the folder was registered
    or checked again (training_backend.stage.Info keys: architecture, parameters, dtype, context
    length, vocabulary, chat template, prompt previews), kept so that pages show it without
    reading the folder; empty for a folder a stage has yet to build (the demo's tiny base)."""

    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=1000, help_text="HF model folder (weights + tokenizer) on the shared disk")
    parameter_count = models.BigIntegerField(null=True, blank=True)
    notes = models.TextField(blank=True)
    info = models.JSONField(default=dict, blank=True, help_text="what inspect-model found in the folder")
    checked_at = models.DateTimeField(null=True, blank=True, help_text="when the folder was last inspected")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PromptSet(models.Model):
    """Prompts with gold answers (math), tests (code) or none (general), stored as JSONL files."""

    class Kind(models.TextChoices):
        MATH = "math"
        CODE = "code"
        GENERAL = "general"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MATH)
    train_path = models.CharField(max_length=1000)
    eval_path = models.CharField(max_length=1000, blank=True)
    train_count = models.PositiveIntegerField(default=0)
    eval_count = models.PositiveIntegerField(default=0)
    source_name = models.CharField(max_length=300, blank=True, help_text="the uploaded file's name")
    # A set exported from a run's prompt lineage (rollouts.services.prompt_class_export): the run,
    # the class its prompts were in and the run's last step then. The lineage graph draws the edge.
    source_run = models.ForeignKey("tracking.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_class = models.CharField(max_length=20, blank=True)
    source_step = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PipelineRun(models.Model):
    """A pipeline run made from a template (R1-Zero, R1, Distill, Eval, custom).

    `status` is derived from its stages (state_machine.pipeline_run_refresh_status)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    name = models.CharField(max_length=200)
    template = models.CharField(max_length=40, default="r1_zero")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    base_model = models.ForeignKey(BaseModel, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    prompt_set = models.ForeignKey(PromptSet, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def status_payload(self) -> dict:
        """What the live pages get: the run's status and each stage's status and progress."""
        stages = list(self.stages.all()) if self.pk else []
        return {
            "id": self.pk,
            "status": self.status,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "stages": [s.status_payload() for s in stages],
        }


class Stage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="stages")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=40)
    config = models.JSONField(default=dict, blank=True)
    # Where the model and data come from, e.g. {"model": {"from": "base_model", "id": 3},
    # "train_data": {"from": "prompt_set", "id": 7}} or {"model": {"from": "stage", "index": 0}}.
    inputs = models.JSONField(default=dict, blank=True)
    # The trainer's outputs.json (final checkpoint, checkpoints, summary) once it has run.
    outputs = models.JSONField(default=dict, blank=True)
    # What the inputs resolved to when the stage last started (paths, labels): the lineage.
    resolved_inputs = models.JSONField(default=dict, blank=True)
    num_gpus = models.PositiveSmallIntegerField(default=1)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_detail = models.CharField(max_length=200, blank=True, help_text="e.g. worker lost, exit code 1")
    attempt = models.PositiveIntegerField(default=0, help_text="current attempt number (0 = never queued)")
    resume = models.BooleanField(default=False, help_text="the current attempt continues from the latest checkpoint")
    cancel_requested = models.BooleanField(default=False)
    output_dir = models.CharField(max_length=1000, blank=True)
    log_path = models.CharField(max_length=1000, blank=True)
    task_id = models.CharField(max_length=200, blank=True)
    worker_host = models.CharField(max_length=200, blank=True)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    eta_s = models.FloatField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    tracked_run = models.OneToOneField("tracking.Run", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="stage")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="pipelines_stage_run_index")]

    def __str__(self) -> str:
        return f"{self.run.name} · {self.name}"

    @property
    def progress_pct(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 100.0
        if not self.progress_total:
            return 0.0
        return round(100.0 * min(self.progress_step, self.progress_total) / self.progress_total, 1)

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    def status_payload(self) -> dict:
        return {
            "id": self.pk,
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "status_detail": self.status_detail,
            "attempt": self.attempt,
            "step": self.progress_step,
            "total": self.progress_total,
            "pct": self.progress_pct,
            "eta_s": self.eta_s,
            "worker_host": self.worker_host,
            "exit_code": self.exit_code,
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "cancel_requested": self.cancel_requested,
        }


class StageAttempt(models.Model):
    """One start of a stage: the unit of idempotency for the Celery task (stage, number)."""

    class Outcome(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        WORKER_LOST = "worker_lost"

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    resume = models.BooleanField(default=False)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.QUEUED)
    task_id = models.CharField(max_length=200, blank=True)
    worker_host = models.CharField(max_length=200, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)
    trainer_pid = models.IntegerField(null=True, blank=True)
    log_path = models.CharField(max_length=1000, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    first_step = models.PositiveIntegerField(null=True, blank=True)
    last_step = models.PositiveIntegerField(null=True, blank=True)
    queued_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["stage", "number"]
        constraints = [models.UniqueConstraint(fields=["stage", "number"], name="pipelines_attempt_stage_number")]

    @property
    def is_finished(self) -> bool:
        return self.outcome not in (self.Outcome.QUEUED, self.Outcome.RUNNING)
