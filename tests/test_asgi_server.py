"""The web server's request path (r1lab/asgi.py, r1lab/asgi_handler.py, r1lab/live.py): the
middleware and the view in one thread hop, database connections from a pool, live pushes sent
from the server's event loop after the answer, in order."""
import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from tests.asgi_client import asgi_request

ROOT = Path(__file__).resolve().parents[1]


def _settings_of_the_web_server(**env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "R1LAB_DB_"))}
    env.update(env_overrides)
    code = ("import r1lab.asgi; from django.conf import settings; d = settings.DATABASES['default']; "
            "print(d['OPTIONS'].get('pool'), d['CONN_MAX_AGE'])")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_web_server_pools_its_database_connections():
    url = "postgres://postgres@127.0.0.1:5432/nothing_is_opened"
    default = _settings_of_the_web_server(DATABASE_URL=url)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split()[-2:] != ["None", "0"] and "max_size" in default.stdout
    persistent = _settings_of_the_web_server(DATABASE_URL=url, R1LAB_DB_CONN_MAX_AGE="60")
    assert persistent.stdout.split()[-2:] == ["None", "60"], persistent.stderr
    both = _settings_of_the_web_server(DATABASE_URL=url, R1LAB_DB_CONN_MAX_AGE="60", R1LAB_DB_POOL="1")
    assert both.returncode != 0 and "R1LAB_DB_CONN_MAX_AGE > 0 and a connection pool exclude each other" in both.stderr
    bad = _settings_of_the_web_server(DATABASE_URL=url, R1LAB_DB_POOL="yes")
    assert bad.returncode != 0 and "R1LAB_DB_POOL='yes'" in bad.stderr


def test_the_middleware_chain_runs_in_one_thread_hop():
    """Built in sync mode and run in one sync_to_async: with Django's stock handler one sync-only
    middleware made every request switch between the loop and threads about a dozen times."""
    from asgiref.sync import SyncToAsync

    from r1lab.asgi import django_asgi_app

    assert isinstance(django_asgi_app._middleware_chain, SyncToAsync)
    inner = django_asgi_app._middleware_chain.func
    assert not asyncio.iscoroutinefunction(inner)


@pytest.mark.django_db(transaction=True)
def test_an_ingest_answered_through_the_server_is_pushed_from_its_loop_in_order(in_memory_channel_layer):
    from channels.layers import get_channel_layer

    from r1lab.tracking.services import run_group_name, tracked_run_create

    run, token = tracked_run_create(name="live")
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(run_group_name(run.pk), channel)
        for step in range(3):
            body = json.dumps({"metrics": [{"key": "reward", "step": step, "value": step / 10}]}).encode()
            answer = await asgi_request(f"/api/v1/runs/{run.pk}/log", [body], headers=headers)
            assert answer.status == 200, answer.body
        return [await asyncio.wait_for(layer.receive(channel), 10) for _ in range(3)]

    events = async_to_sync(scenario)()
    assert [e["points"]["reward"][0][:2] for e in events] == [[0, 0.0], [1, 0.1], [2, 0.2]]


def test_a_push_from_a_worker_thread_goes_out_on_the_server_loop_in_order(in_memory_channel_layer):
    from channels.layers import get_channel_layer

    from r1lab import live

    loop = asyncio.new_event_loop()
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()
    try:
        layer = get_channel_layer()
        channel = asyncio.run_coroutine_threadsafe(layer.new_channel(), loop).result(5)
        asyncio.run_coroutine_threadsafe(layer.group_add("g", channel), loop).result(5)
        loop.call_soon_threadsafe(live.bind_server_loop, loop)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
        built_on = []

        def event(i):
            def build():
                built_on.append(threading.current_thread())
                return {"type": "t", "i": i}
            return build

        for i in range(20):
            live.group_send("g", event(i))  # from this (worker) thread: handed to the loop, not awaited
        got = [asyncio.run_coroutine_threadsafe(layer.receive(channel), loop).result(5)["i"] for _ in range(20)]
        assert got == list(range(20))
        assert set(built_on) == {server}  # the events were built on the loop, off the caller's path
    finally:
        loop.call_soon_threadsafe(loop.stop)
        server.join(5)
        loop.close()
