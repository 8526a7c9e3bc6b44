"""Browser tests: a real ASGI server (daphne, HTTP + WebSocket) in a subprocess on the test
database, driven by Playwright through Debian's Chromium.

The server is started once per session; tests use `transactional_db` so that what they
create is committed and visible to it (and flushed afterwards).
"""
from __future__ import annotations

import contextlib
import os

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# around it are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("R1LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict:
    """The environment for a subprocess that must use the *test* database."""
    from django.conf import settings
    from django.db import connection

    env = os.environ.copy()
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        user = db.get("USER") or "postgres"
        auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{user}@"
        env["DATABASE_URL"] = f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    else:
        env.pop("DATABASE_URL", None)
        env["R1LAB_SQLITE_PATH"] = str(db["NAME"])
    env["R1LAB_VAR_DIR"] = str(settings.VAR_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


@contextlib.contextmanager
def daphne_server(env: dict, log_path: Path, ready: str = "/healthz"):
    """daphne serving r1lab (r1lab.asgi) on a free port with `env`, its output in `log_path`: yields
    the base URL once `ready` answers (60 s at most), and stops it on leaving."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "r1lab.asgi:application"],
                            cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + ready, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"daphne did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def live_asgi(django_db_setup, django_db_blocker, tmp_path_factory):
    """Base URL of a daphne server running r1lab on the test database."""
    with django_db_blocker.unblock():
        env = server_env()
    # An open socket re-checks its user's access every second (default 60 s): a test that takes a
    # user's access away sees the socket closed (4403) without waiting for a minute, whichever
    # channel layer carries, or does not carry, the push from the test process.
    env["R1LAB_WS_RECHECK_S"] = "1"
    with daphne_server(env, tmp_path_factory.mktemp("daphne") / "daphne.log", ready="/login/") as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    context.close()


@pytest.fixture
def new_page(browser):
    """Factory for extra independent browser sessions (e.g. two users editing at once)."""
    contexts = []

    def _new():
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(ctx)
        p = ctx.new_page()
        p.set_default_timeout(15_000)
        return p

    yield _new
    for ctx in contexts:
        ctx.close()


def login(page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")


@pytest.fixture
def login_as(page, live_asgi, transactional_db, password):
    """`user = login_as("researcher")`: a new user with that role, logged in on `page`."""
    from tests.factories import UserFactory

    def _login(role: str | None, p=None):
        user = UserFactory(is_staff=True, is_superuser=True) if role == "staff" else UserFactory(role=role)
        login(p or page, live_asgi, user.username, password)
        return user

    return _login


__all__ = ["login", "server_env"]
