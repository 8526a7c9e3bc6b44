"""Live run status. Consumers only forward events; state changes go through HTTP + services."""
from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from r1lab.accounts.consumers import FollowGroupConsumer, UserAccessMixin
from r1lab.pipelines import selectors
from r1lab.pipelines.models import PipelineRun
from r1lab.pipelines.state_machine import RUNS_GROUP, run_group_name

# With the in-memory layer (embedded mode) the Celery worker, a separate process, cannot reach
# this one: poll the database for what it wrote instead. With Redis, events arrive pushed.
POLL_INTERVAL_S = 1.0


class RunStatusConsumer(FollowGroupConsumer):
    """ws/runs/<id>/: the run's status and each stage's status and progress."""

    access_action = "runs.view"

    def group_for(self, object_id: int) -> str:
        return run_group_name(object_id)

    async def first_message(self) -> dict | None:
        payload = await self._payload()
        return {"type": "run.status", "run": payload} if payload else None

    async def after_connect(self, first: dict) -> None:
        self._last = first["run"]
        self._poller = None
        if isinstance(self.channel_layer, InMemoryChannelLayer):
            self._poller = asyncio.ensure_future(self._poll())

    async def before_disconnect(self) -> None:
        if getattr(self, "_poller", None):
            self._poller.cancel()

    async def run_status(self, event):
        self._last = event["run"]
        await self.send_json({"type": "run.status", "run": event["run"]})

    @database_sync_to_async
    def _payload(self) -> dict | None:
        run = PipelineRun.objects.filter(pk=self.object_id).first()
        return run.status_payload() if run else None

    async def _poll(self):
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            payload = await self._payload()
            if payload and payload != self._last:
                await self.run_status({"run": payload})


class RunListConsumer(UserAccessMixin, AsyncJsonWebsocketConsumer):
    """ws/runs/: every run's status changes, for the runs list."""

    access_action = "runs.view"

    async def connect(self):
        if not await self.access_connect():
            return
        await self.channel_layer.group_add(RUNS_GROUP, self.channel_name)
        await self.accept()
        self._last: dict[int, dict] = {}
        self._poller = None
        if isinstance(self.channel_layer, InMemoryChannelLayer):
            self._last = await self._snapshot()
            self._poller = asyncio.ensure_future(self._poll())

    async def disconnect(self, code):
        await self.access_disconnect()
        await self.channel_layer.group_discard(RUNS_GROUP, self.channel_name)
        if getattr(self, "_poller", None):
            self._poller.cancel()

    async def run_status(self, event):
        self._last[event["run"]["id"]] = event["run"]
        await self.send_json({"type": "run.status", "run": event["run"]})

    @database_sync_to_async
    def _snapshot(self) -> dict[int, dict]:
        return {r.pk: r.status_payload() for r in selectors.runs_for_list(user=self.scope["user"], limit=100)}

    async def _poll(self):
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            for run_id, payload in (await self._snapshot()).items():
                if self._last.get(run_id) != payload:
                    await self.run_status({"run": payload})
