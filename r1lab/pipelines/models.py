from __future__ import annotations

from django.conf import settings
from django.db import models


class PipelineRun(models.Model):
    """A pipeline run made from a template (R1-Zero, R1, Distill, Eval, custom)."""

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
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def status_payload(self) -> dict:
        return {"id": self.pk, "status": self.status, "updated_at": self.updated_at.isoformat()}
