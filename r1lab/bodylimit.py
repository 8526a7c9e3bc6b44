"""Request body limits, enforced while the body arrives, before anything buffers it.

Django's ASGI handler copies the whole body into a temporary file (on disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any view, form or `DATA_UPLOAD_MAX_MEMORY_SIZE` check
runs, and daphne's HTTP layer (Twisted) has done the same once already before it calls the
application. So an anonymous client could send any number of gigabytes to any URL and each
copy landed on disk. Two guards, one limit per path (`body_limit`):

- `BodyLimitMiddleware`, ASGI, around the Django application (r1lab/asgi.py): 413 at once when
  Content-Length is over the limit, without reading the body; for a chunked body (no length)
  it counts bytes as they arrive and, once over, stops reading and answers 413, so Django
  reads (and writes to its temporary file) at most the limit. Server-agnostic.
- `install_daphne_guard()`: the same limits in daphne's Twisted request, the layer that buffers
  first when daphne serves (`make demo`, the tests). An over-long Content-Length is refused
  when the headers are in (no `100 Continue`, no body buffered); a chunked body is counted and
  refused once over. Either way the rejected request never reaches the application and the
  rest of the body is read and dropped, never stored.

Uploads (curation and prompt-set imports) are request bodies too: they are bounded by
R1LAB_MAX_BODY_BYTES while they are read, by both guards.
"""
from __future__ import annotations

import io

import orjson
from django.conf import settings

API_PREFIX = "/api/"


def body_limit(path: str) -> int:
    """The largest request body, in bytes, that `path` accepts."""
    if path.startswith(API_PREFIX):
        # The ingest API (its views check the same limit, `tracking.api._body`).
        return settings.R1LAB_INGEST_MAX_BYTES
    return settings.R1LAB_MAX_BODY_BYTES


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def too_large_message(path: str, limit: int, length: int | None) -> str:
    size = f"is {length} bytes" if length is not None else "is over the limit"
    if path.startswith(API_PREFIX):
        # The same words as the ingest API's own check.
        return f"body {size}; the limit is {limit} (send smaller batches)"
    return f"The request body {size}; this server accepts at most {_human(limit)}. Upload a smaller file."


def too_large_response(path: str, limit: int, length: int | None) -> tuple[bytes, bytes]:
    """(content type, body) of the 413 answer: JSON for the API, plain text for pages."""
    message = too_large_message(path, limit, length)
    if path.startswith(API_PREFIX):
        return b"application/json", orjson.dumps({"error": message})
    return b"text/plain; charset=utf-8", message.encode()


def _content_length(headers) -> int | None:
    """The declared length; None when absent. ValueError when it is not one number."""
    values = [v.strip() for k, v in headers if k.lower() == b"content-length"]
    if not values:
        return None
    if not all(v.isdigit() for v in values) or len(set(values)) != 1:  # garbage, or two that disagree
        raise ValueError(values)
    return int(values[0])


class BodyLimitMiddleware:
    """ASGI middleware (HTTP only): 413 before the wrapped application buffers a body over the
    limit for its path."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = body_limit(path)
        try:
            length = _content_length(scope.get("headers", []))
        except ValueError:
            return await self._answer(send, 400, b"text/plain; charset=utf-8", b"Content-Length is not a number.")
        if length is not None and length > limit:
            return await self._answer(send, 413, *too_large_response(path, limit, length))

        received = 0
        over = False
        started = False

        async def limited_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # To the application this is a client that went away: Django's handler drops
                    # what it buffered and returns without answering; the 413 is ours.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if over and not started:
            await self._answer(send, 413, *too_large_response(path, limit, None))

    @staticmethod
    async def _answer(send, status: int, content_type: bytes, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
            # The unread rest of the body must not be taken for the next request.
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def install_daphne_guard() -> None:
    """Make daphne's Twisted request enforce `body_limit` while it receives the body.

    daphne builds every HTTP request from `daphne.http_protocol.WebRequest` (looked up when a
    connection opens); this swaps in a subclass. Idempotent; a no-op without daphne."""
    try:
        from daphne import http_protocol
    except ImportError:  # another ASGI server: BodyLimitMiddleware still applies
        return
    if getattr(http_protocol.WebRequest, "r1lab_body_limit", False):
        return
    http_protocol.WebRequest = _limited_request_class(http_protocol.WebRequest)


def _limited_request_class(base):
    class LimitedWebRequest(base):
        r1lab_body_limit = True
        _r1lab_limit: int | None = None
        _r1lab_path = ""
        _r1lab_received = 0
        _r1lab_rejected = False

        def gotLength(self, length):
            # Called once the headers are in. The request line's path is the channel's until the
            # whole request is received (twisted.web.http.HTTPChannel.lineReceived).
            raw = getattr(self.channel, "_path", b"") or b""
            self._r1lab_path = raw.split(b"?", 1)[0].decode("latin-1")
            self._r1lab_limit = body_limit(self._r1lab_path)
            if length is not None and length > self._r1lab_limit:
                # No `100 Continue` (HTTPChannel sends it after this returns): a client that asked
                # first then sends no body at all.
                self.requestHeaders.removeHeader(b"Expect")
                self.content = io.BytesIO()
                self._r1lab_reject(length)
                return
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self._r1lab_rejected:
                return self._r1lab_drain(len(data))
            self._r1lab_received += len(data)
            if self._r1lab_limit is not None and self._r1lab_received > self._r1lab_limit:
                self.content.close()  # what was buffered so far (a temporary file) goes now
                self.content = io.BytesIO()
                return self._r1lab_reject(None)
            super().handleContentChunk(data)

        def requestReceived(self, command, path, version):
            if self._r1lab_rejected:  # answered already; never handed to the application
                if self.channel is not None:
                    self.channel.loseConnection()
                return
            super().requestReceived(command, path, version)

        def _r1lab_reject(self, length):
            self._r1lab_rejected = True
            self._r1lab_received = 0
            content_type, body = too_large_response(self._r1lab_path, self._r1lab_limit, length)
            head = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: " + content_type
                    + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            self.channel.transport.write(head + body)

        def _r1lab_drain(self, n: int):
            # The client may still be sending: closing now could reset the connection before it
            # reads the 413, so read and drop the rest, up to one more limit's worth, then close.
            self._r1lab_received += n
            if self._r1lab_received > self._r1lab_limit and self.channel is not None:
                self.channel.loseConnection()

    LimitedWebRequest.__name__ = LimitedWebRequest.__qualname__ = f"Limited{base.__name__}"
    return LimitedWebRequest
