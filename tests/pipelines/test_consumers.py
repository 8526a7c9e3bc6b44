import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from r1lab.asgi import application
from r1lab.pipelines.state_machine import pipeline_run_set_status
from tests.factories import PipelineRunFactory, UserFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("in_memory_channel_layer")]


async def _communicator(user, run_id):
    comm = WebsocketCommunicator(application, f"/ws/runs/{run_id}/", headers=[(b"origin", b"http://localhost")])
    if user is not None:
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
        from django.contrib.sessions.backends.db import SessionStore

        def make_session():
            s = SessionStore()
            s[SESSION_KEY] = str(user.pk)
            s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            s[HASH_SESSION_KEY] = user.get_session_auth_hash()
            s.save()
            return s.session_key

        key = await database_sync_to_async(make_session)()
        comm.scope["headers"].append((b"cookie", f"sessionid={key}".encode()))
    return comm


async def test_run_page_receives_its_status_live():
    user = await database_sync_to_async(UserFactory)(role="viewer")
    run = await database_sync_to_async(PipelineRunFactory)()
    comm = await _communicator(user, run.pk)
    connected, _ = await comm.connect()
    assert connected
    first = await comm.receive_json_from(timeout=5)
    assert first["run"]["status"] == "pending"
    await database_sync_to_async(pipeline_run_set_status)(run=run, status="running")
    update = await comm.receive_json_from(timeout=5)
    assert update == {"type": "run.status", "run": {**update["run"], "id": run.pk, "status": "running"}}
    await comm.disconnect()


async def test_anonymous_socket_is_refused():
    run = await database_sync_to_async(PipelineRunFactory)()
    comm = await _communicator(None, run.pk)
    connected, _ = await comm.connect()  # accepted, then closed with the code the browser sees
    assert connected and await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await comm.disconnect()  # the consumer ends its own way, not cancelled at the loop's close


async def test_foreign_origin_is_refused():
    user = await database_sync_to_async(UserFactory)(role="viewer")
    run = await database_sync_to_async(PipelineRunFactory)()
    comm = await _communicator(user, run.pk)
    comm.scope["headers"] = [h for h in comm.scope["headers"] if h[0] != b"origin"] + [(b"origin", b"http://evil.example")]
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_runs_list_socket_receives_every_runs_changes():
    user = await database_sync_to_async(UserFactory)(role="viewer")
    run = await database_sync_to_async(PipelineRunFactory)()
    comm = WebsocketCommunicator(application, "/ws/runs/", headers=[(b"origin", b"http://localhost")])
    comm.scope["headers"] = (await _communicator(user, run.pk)).scope["headers"]
    connected, _ = await comm.connect()
    assert connected
    await database_sync_to_async(pipeline_run_set_status)(run=run, status="queued")
    update = await comm.receive_json_from(timeout=5)
    assert update["type"] == "run.status" and update["run"]["id"] == run.pk and update["run"]["status"] == "queued"
    await comm.disconnect()


async def test_anonymous_list_socket_is_refused():
    comm = WebsocketCommunicator(application, "/ws/runs/", headers=[(b"origin", b"http://localhost")])
    connected, _ = await comm.connect()  # accepted, then closed with the code the browser sees
    assert connected and await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await comm.disconnect()  # the consumer ends its own way, not cancelled at the loop's close
