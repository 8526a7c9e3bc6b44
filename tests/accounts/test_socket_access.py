"""An open WebSocket closes when its user may no longer use it (issue 15).

Before, a consumer checked the user once, on connect: a deactivated user (or one whose role was
removed) kept receiving live run statuses and metrics for as long as the page stayed open."""
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from r1lab.accounts.services import user_deactivate
from r1lab.asgi import application
from r1lab.tracking.services import tracked_run_create
from tests.factories import PipelineRunFactory, UserFactory
from tests.pipelines.test_consumers import _communicator

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("in_memory_channel_layer")]

CLOSED = {"type": "websocket.close", "code": 4403}


async def _socket(user, kind: str):
    """An open socket of `user`: a run page ("run"), the runs list ("list"), a metrics page ("metrics")."""
    if kind == "metrics":
        run, _ = await database_sync_to_async(tracked_run_create)(name="r", project="p")
        path = f"/ws/metrics/runs/{run.pk}/"
    else:
        run = await database_sync_to_async(PipelineRunFactory)()
        path = "/ws/runs/" if kind == "list" else f"/ws/runs/{run.pk}/"
    comm = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost")])
    comm.scope["headers"] = (await _communicator(user, run.pk)).scope["headers"]
    connected, _ = await comm.connect()
    assert connected
    return comm


async def _closed(comm, timeout: float = 5) -> dict:
    """The next websocket.close the server sends (status messages before it are skipped)."""
    while True:
        message = await comm.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            return message


@pytest.mark.parametrize("kind", ["run", "list", "metrics"])
async def test_deactivating_the_user_closes_their_open_sockets(kind):
    user = await database_sync_to_async(UserFactory)(role="viewer")
    other = await database_sync_to_async(UserFactory)(role="viewer")
    comm, others = await _socket(user, kind), await _socket(other, kind)
    await database_sync_to_async(user_deactivate)(user=user)
    assert await _closed(comm) == CLOSED
    await comm.disconnect()
    # Another user's socket stays open.
    while not await others.receive_nothing(timeout=0.3):
        assert (await others.receive_output())["type"] == "websocket.send"
    await others.disconnect()


async def test_removing_the_role_closes_the_socket():
    user = await database_sync_to_async(UserFactory)(role="viewer")
    comm = await _socket(user, "run")
    await database_sync_to_async(user.groups.clear)()
    assert await _closed(comm) == CLOSED
    await comm.disconnect()


async def test_an_admin_save_that_deactivates_closes_the_socket():
    user = await database_sync_to_async(UserFactory)(role="researcher")
    comm = await _socket(user, "list")

    def deactivate_like_the_admin():
        user.is_active = False
        user.save()

    await database_sync_to_async(deactivate_like_the_admin)()
    assert await _closed(comm) == CLOSED
    await comm.disconnect()


async def test_a_change_that_sends_no_signal_is_caught_by_the_periodic_recheck(settings):
    settings.R1LAB_WS_RECHECK_S = 0.2
    user = await database_sync_to_async(UserFactory)(role="viewer")
    comm = await _socket(user, "metrics")
    await database_sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
    assert await _closed(comm) == CLOSED
    await comm.disconnect()


async def test_a_deactivated_user_cannot_connect():
    user = await database_sync_to_async(UserFactory)(role="viewer", is_active=False)
    run = await database_sync_to_async(PipelineRunFactory)()
    comm = await _communicator(user, run.pk)
    connected, _ = await comm.connect()  # accepted, then closed with the code the browser sees
    assert connected and await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await comm.disconnect()


async def test_a_save_that_takes_nothing_away_leaves_the_socket_open():
    user = await database_sync_to_async(UserFactory)(role="viewer")
    comm = await _socket(user, "list")

    def edit_email():
        user.email = "new@example.test"
        user.save()

    await database_sync_to_async(edit_email)()
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()
