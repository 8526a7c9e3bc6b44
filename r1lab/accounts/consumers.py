"""What every r1lab WebSocket shares: it stays open only while its user may use it.

A consumer checks the user's permission when it connects (`access_connect`) and joins the
user's group, `user.<id>`. When a user is deactivated, loses a role or staff status, or is
deleted, `services.user_access_changed` tells that group after commit (the receivers in
`signals.py` call it for any save of the user or of their roles, the admin's included); each of
the user's sockets re-reads the user and closes with 4403 if it may no longer see what it
shows. Why a push and not only a timer: the change takes effect at once. Why a timer as well
(every R1LAB_WS_RECHECK_S): a change that sends no signal (a bulk `update()`, SQL) or that is
made in another process while the channel layer is the in-memory one (embedded mode) reaches
no socket otherwise. The check is one primary-key query per socket per interval.
"""
from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from r1lab.accounts.permissions import can

CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4403, 4404


def user_group_name(user_id: int) -> str:
    return f"user.{user_id}"


def _allowed(user_id: int, action: str) -> bool:
    user = get_user_model().objects.filter(pk=user_id).first()
    return user is not None and can(user, action)


class UserAccessMixin:
    """For AsyncWebsocketConsumer subclasses: `access_action` names the permission the socket
    needs; call `access_connect()` first in connect() and `access_disconnect()` in disconnect()."""

    access_action = "runs.view"
    _access_user_id: int | None = None
    _access_task: asyncio.Future | None = None

    async def access_connect(self) -> bool:
        """False (and the socket refused with 4403) unless the user may use it."""
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(can)(user, self.access_action):
            await self.refuse(CLOSE_FORBIDDEN)
            return False
        self._access_user_id = user.pk
        await self.channel_layer.group_add(user_group_name(user.pk), self.channel_name)
        self._access_task = asyncio.ensure_future(self._access_recheck_every())
        return True

    async def refuse(self, code: int) -> None:
        """Refuse with a close code the browser sees: a close before the handshake is accepted
        reaches it as HTTP 403 and code 1006, which static/js/socket.js must retry; accepted and
        closed at once, it gets 4403/4404 and stops. Nothing is sent in between."""
        await self.accept()
        await self.close(code=code)

    async def access_disconnect(self) -> None:
        if self._access_task is not None:
            self._access_task.cancel()
        if self._access_user_id is not None:
            await self.channel_layer.group_discard(user_group_name(self._access_user_id), self.channel_name)

    async def user_access_changed(self, event) -> None:
        """`user.access_changed`, sent by services.user_access_changed."""
        await self._access_recheck()

    async def _access_recheck(self) -> None:
        if not await database_sync_to_async(_allowed)(self._access_user_id, self.access_action):
            await self.close(code=CLOSE_FORBIDDEN)

    async def _access_recheck_every(self) -> None:
        while True:
            await asyncio.sleep(settings.R1LAB_WS_RECHECK_S)
            await self._access_recheck()


class FollowGroupConsumer(UserAccessMixin, AsyncJsonWebsocketConsumer):
    """A socket that follows one object's group (a run page's metrics, a pipeline run's status):
    the URL's `url_kwarg` names the object, `first_message()` reads what the page gets on connect
    (None: no such object, closed with 4404), `group_for(id)` names the group whose events the
    subclass's handlers forward. Consumers never change state: writes go through HTTP."""

    url_kwarg = "run_id"

    def group_for(self, object_id: int) -> str:
        raise NotImplementedError

    async def first_message(self) -> dict | None:
        raise NotImplementedError

    async def after_connect(self, first: dict) -> None:
        """Hook: what else to start once the socket is open (a poller, say)."""

    async def before_disconnect(self) -> None:
        """Hook: what to stop when the socket goes."""

    async def connect(self):
        if not await self.access_connect():
            return
        self.object_id = int(self.scope["url_route"]["kwargs"][self.url_kwarg])
        first = await self.first_message()
        if first is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        self.group = self.group_for(self.object_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(first)
        await self.after_connect(first)

    async def disconnect(self, code):
        await self.access_disconnect()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.before_disconnect()
