"""Request bodies are limited while they arrive, before Django buffers them (issue 15, finding 8).

Before: Django's ASGI handler read every body to its end into a temporary file (on disk past
8 MiB) before any check; the only limit (the ingest API's) looked at the body afterwards. These
tests call the real application (r1lab/asgi.py) and count what it pulls from the server."""
import pytest
from asgiref.sync import async_to_sync

from tests.asgi_client import asgi_request

KIB = 1024


@pytest.fixture
def small_limits(settings):
    settings.R1LAB_MAX_BODY_BYTES = 64 * KIB
    settings.R1LAB_INGEST_MAX_BYTES = 32 * KIB


def _stream(n_chunks: int, size: int = 16 * KIB):
    return (b"x" * size for _ in range(n_chunks))


def _multipart_upload(n_chunks: int, size: int = 16 * KIB):
    """A curation import form: one .jsonl file of n_chunks × size bytes, streamed."""
    yield (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
           b"Content-Type: application/octet-stream\r\n\r\n")
    line = b'{"prompt": "1+1?", "reasoning": "' + b"x" * (size - 40) + b'"}\n'
    for _ in range(n_chunks):
        yield line
    yield b"\r\n--b0undary--\r\n"


@pytest.mark.django_db
def test_a_chunked_upload_is_cut_off_just_past_the_limit(small_limits):
    from r1lab.curation.models import ImportJob

    # No Content-Length (chunked upload), to the curation import page: 200 chunks (3.2 MiB)
    # offered, about 64 KiB taken, no import job. Before: all of it read, then the view ran.
    answer = async_to_sync(asgi_request)("/curation/p/demo/import/", _multipart_upload(200),
                                          headers=[(b"content-type", b"multipart/form-data; boundary=b0undary")])
    assert answer.status == 413
    assert 64 * KIB < answer.consumed <= 64 * KIB + 16 * KIB
    assert ImportJob.objects.count() == 0
    assert answer.headers[b"content-type"].startswith(b"text/plain")
    assert b"this server accepts at most 64 KiB" in answer.body
    assert answer.headers[b"connection"] == b"close"


def test_a_declared_length_over_the_limit_is_refused_before_any_read(small_limits):
    answer = async_to_sync(asgi_request)("/runs/prompt-sets/import/", _stream(5, 16 * KIB),
                                          headers=[(b"content-length", str(80 * KIB).encode())])
    assert answer.status == 413
    assert answer.receive_calls == 0 and answer.consumed == 0
    assert f"is {80 * KIB} bytes".encode() in answer.body


def test_the_api_has_its_own_limit_and_answers_json(small_limits):
    answer = async_to_sync(asgi_request)("/api/v1/runs/1/log", _stream(100, 8 * KIB))
    assert answer.status == 413
    assert 32 * KIB < answer.consumed <= 40 * KIB
    assert answer.headers[b"content-type"] == b"application/json"
    assert b'"error"' in answer.body and b"the limit is 32768 (send smaller batches)" in answer.body


@pytest.mark.django_db(transaction=True)  # Django's request_finished closes the thread's connection
def test_a_body_within_the_limit_reaches_django(small_limits):
    # POST /healthz: Django answers it (CSRF 403 or 405), after reading the whole body.
    answer = async_to_sync(asgi_request)("/healthz", _stream(3), headers=[(b"content-length", str(48 * KIB).encode())])
    assert answer.status in (403, 405)
    assert answer.consumed == 48 * KIB


def test_a_content_length_that_is_not_a_number_is_400():
    answer = async_to_sync(asgi_request)("/login/", [b"abc"], headers=[(b"content-length", b"3x")])
    assert answer.status == 400 and answer.consumed == 0
