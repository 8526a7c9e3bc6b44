from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from r1lab.pipelines.models import PipelineRun


def run_group_name(run_id: int) -> str:
    return f"run.{run_id}"


def _push(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, event)


def pipeline_run_set_status(*, run: PipelineRun, status: str) -> PipelineRun:
    """Write the status, then tell the pages watching the run (after commit, never before)."""
    if status not in PipelineRun.Status.values:
        raise ValueError(f"unknown status {status!r}")
    with transaction.atomic():
        run.status = status
        run.save(update_fields=["status", "updated_at"])
        payload = run.status_payload()
        transaction.on_commit(lambda: _push(run_group_name(run.pk), {"type": "run.status", "run": payload}))
    return run
