"""The body limit over real HTTP against daphne (issue 15, finding 8).

daphne's HTTP layer (Twisted) used to buffer every request body, whatever its size, into a
temporary file before r1lab saw any of it; Django then copied it again. Now a declared length
over the limit is refused as soon as the headers are in, and a chunked body once it passes
the limit, while the client is still sending. Raw sockets: a client library would not show
when the answer came."""
from __future__ import annotations

import select
import socket
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
INGEST_LIMIT = 16 * MIB  # R1LAB_INGEST_MAX_BYTES, default


def _connect(base: str) -> socket.socket:
    url = urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    return sock


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(live_asgi):
    sock = _connect(live_asgi)
    sock.sendall(b"POST /curation/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n")
    answer = _read_answer(sock)  # no body was sent: a 100 Continue here would mean "send 10 GiB"
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"is 10737418240 bytes; this server accepts at most 32 MiB" in answer


def test_a_chunked_body_is_refused_once_over_the_limit_while_the_client_still_sends(live_asgi):
    sock = _connect(live_asgi)
    sock.sendall(b"POST /api/v1/runs/1/log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer r1r_whatever\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n" % MIB + b" " * MIB + b"\r\n"
    sent = 0
    answered_at = None
    try:
        while sent < 4 * INGEST_LIMIT:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                answered_at = sent
                break
            if writable:
                sock.sendall(piece)
                sent += MIB
    except (BrokenPipeError, ConnectionResetError):
        answered_at = sent
    answer = _read_answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error"' in answer and b"the limit is 16777216" in answer
    # Answered while the stream went on: at the limit plus what the sockets' buffers held, not
    # after the whole 64 MiB (before, daphne waited for the last chunk and then the view refused).
    assert answered_at is not None and answered_at < 2 * INGEST_LIMIT
