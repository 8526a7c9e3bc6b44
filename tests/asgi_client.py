"""Call r1lab's real ASGI application (r1lab/asgi.py) with a request body fed chunk by chunk, and
count how much of it the application pulled: what a server would have had to hand over."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    consumed: int  # body bytes the application read through `receive`
    receive_calls: int


async def asgi_request(path: str, chunks, *, headers=(), method: str = "POST") -> Answer:
    """`chunks`: an iterable of byte strings; the last one is sent with more_body=False."""
    from r1lab.asgi import application

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"localhost"), *headers], "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pending = iter(chunks)
    nxt = next(pending, None)
    consumed = calls = 0
    finished = asyncio.Event()

    async def receive():
        nonlocal nxt, consumed, calls
        calls += 1
        if nxt is None:  # the body is over: the next event is the client leaving, once answered
            await finished.wait()
            return {"type": "http.disconnect"}
        chunk, nxt = nxt, next(pending, None)
        consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": nxt is not None}

    sent = []

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], dict(start["headers"]), body, consumed, calls)
