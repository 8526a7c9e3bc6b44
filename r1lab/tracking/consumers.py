"""Live run pages: one WebSocket per open run page. The consumer only forwards what the ingest
service pushes after commit (new points, status, comments); back-fill goes over HTTP."""
from __future__ import annotations

from channels.db import database_sync_to_async

from r1lab.accounts.consumers import FollowGroupConsumer
from r1lab.tracking.models import Run
from r1lab.tracking.services import run_group_name


class RunMetricsConsumer(FollowGroupConsumer):
    """ws/metrics/runs/<id>/: a run page's live points, status, comments and rewinds."""

    access_action = "runs.view"

    def group_for(self, object_id: int) -> str:
        return run_group_name(object_id)

    @database_sync_to_async
    def first_message(self) -> dict | None:
        run = Run.objects.filter(pk=self.object_id).first()
        return {"type": "run.status", "run": run.status_payload()} if run else None

    async def metrics_points(self, event):
        await self.send_json(event)

    async def run_status(self, event):
        await self.send_json(event)

    async def comment_added(self, event):
        await self.send_json(event)

    async def run_rewound(self, event):
        await self.send_json(event)
