"""Django's ASGI handler with the middleware chain and the views run in one thread hop.

r1lab's views are all synchronous (the ORM, psycopg), and its one sync-only middleware made
Django's stock ASGI handler switch modes on every request: async middleware each sending its
`process_request`/`process_response` to the sync thread and back, then `async_to_sync` and
`sync_to_async` again around the view: about a dozen thread handoffs per request, which on a busy
2-core machine cost as much as the request's own work (measured on `runs/log-batch`). Here the
chain is built in sync mode, as under WSGI, and the whole of it runs in one `sync_to_async`
(thread_sensitive: the same one thread as before, so per-thread database connections behave as
they did). Reading the body, streaming the answer and disconnect handling stay Django's own.
"""
from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

from r1lab import live


class SyncChainASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        live.bind_server_loop(asyncio.get_running_loop())  # live pushes go out on this loop
        await super().__call__(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
