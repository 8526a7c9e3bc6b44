"""Live run pages: one WebSocket per open run page. The consumer only forwards what the ingest
service pushes after commit (new points, status, comments); back-fill goes over HTTP."""
from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from r1lab.accounts.consumers import UserAccessMixin
from r1lab.tracking.models import Run
from r1lab.tracking.services import run_group_name


class RunMetricsConsumer(UserAccessMixin, AsyncJsonWebsocketConsumer):
    access_action = "runs.view"

    async def connect(self):
        if not await self.access_connect():
            return
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        payload = await self._status()
        if payload is None:
            await self.close(code=4404)
            return
        self.group = run_group_name(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "run.status", "run": payload})

    async def disconnect(self, code):
        await self.access_disconnect()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def metrics_points(self, event):
        await self.send_json(event)

    async def run_status(self, event):
        await self.send_json(event)

    async def comment_added(self, event):
        await self.send_json(event)

    async def run_rewound(self, event):
        await self.send_json(event)

    @database_sync_to_async
    def _status(self) -> dict | None:
        run = Run.objects.filter(pk=self.run_id).first()
        return run.status_payload() if run else None
