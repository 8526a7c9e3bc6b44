from __future__ import annotations

from django.conf import settings
from django.db import models


class Run(models.Model):
    """A tracked run: what metrics and rollout samples attach to.

    A pipeline stage owns one (pipelines.Stage.tracked_run); an *external* run is created
    through `POST /api/v1/runs` by a trainer r1lab did not launch. Either way the trainer
    reports through the same ingest API with this run's token (stored hashed).
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        CRASHED = "crashed"  # its stage is known dead (worker lost, trainer crashed)

    name = models.CharField(max_length=200)
    project = models.CharField(max_length=100, default="default", db_index=True)
    config = models.JSONField(default=dict, blank=True)
    external = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="last time the trainer reported")
    finished_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name
