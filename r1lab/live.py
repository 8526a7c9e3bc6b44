"""Live pushes to open pages (Channels groups), sent without holding up the request that caused them.

In the web server (daphne), views run on a worker thread while the channel layer lives on the
server's event loop: `async_to_sync(layer.group_send)` from a view hopped to the loop, waited for
Redis and hopped back, a few milliseconds on every ingest call. Here a view hands the event to the
loop and returns at once; one task on the loop sends what it is handed, in the order it was handed
(a page never sees step 12's points before step 11's from the same process). The event may be
given as a callable that builds it, so that building a large event is not on the request's path
either. Outside the server (Celery workers, management commands, tests' sync client) there is no
loop to hand to, and the send happens inline, as before.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from typing import Callable, Union

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

Event = Union[dict, Callable[[], dict]]

_server_loop: asyncio.AbstractEventLoop | None = None
_server_thread: threading.Thread | None = None


class _Sender:
    """The events handed to one loop, sent one after the other by one task on that loop."""

    def __init__(self) -> None:
        self.queue: deque = deque()
        self.task: asyncio.Task | None = None  # held: a task nobody references may be collected

    def put(self, layer, group: str, event: Event) -> None:  # on the loop
        self.queue.append((layer, group, event))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.drain())

    async def drain(self) -> None:
        while self.queue:
            layer, group, event = self.queue.popleft()
            try:
                await layer.group_send(group, event() if callable(event) else event)
            except Exception:  # a page misses a push (it re-reads on reconnect); the data is stored
                log.exception("live push to %s failed", group)


_senders: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sender]" = weakref.WeakKeyDictionary()


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the ASGI handler (r1lab/asgi_handler.py) from the server's event loop."""
    global _server_loop, _server_thread
    if _server_loop is not loop:
        _senders.setdefault(loop, _Sender())
        _server_loop, _server_thread = loop, threading.current_thread()


def group_send(group: str, event: Event) -> None:
    """Send `event` (a dict, or a callable that returns one) to a Channels group."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop
    sender = _senders.get(loop) if loop is not None else None
    if sender is not None and loop.is_running():
        if threading.current_thread() is _server_thread:
            sender.put(layer, group, event)
            return
        try:
            loop.call_soon_threadsafe(sender.put, layer, group, event)
            return
        except RuntimeError:  # the loop closed in between: send inline
            pass
    async_to_sync(layer.group_send)(group, event() if callable(event) else event)
