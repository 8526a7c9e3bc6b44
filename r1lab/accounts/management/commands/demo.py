"""`make demo`: migrate, create demo users, seed demo data, serve, and stop cleanly on Ctrl-C.

Idempotent: a second run reuses the database, the users and the seeded data. Each app may
provide `r1lab/<app>/demo.py` with `seed(*, stdout, first_run: bool) -> None`; they run in
INSTALLED_APPS order (so pipelines can use what tracking seeded).
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from r1lab.accounts.permissions import ROLES
from r1lab.accounts.services import roles_ensure, user_create_with_role

DEMO_USERS = [(role, role) for role in ROLES] + [("admin", None)]


def _mode() -> str:
    """What this configuration runs on (anonymous /healthz says only ok/down)."""
    from django.db import connection

    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    broker = "redis" if settings.REDIS_URL else "filesystem"
    return f"database={connection.vendor} broker={broker} channel_layer={layer}"


class Command(BaseCommand):
    help = "Set up and run the demo lab: web server (ASGI) + Celery workers. Ctrl-C stops everything."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("R1LAB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("R1LAB_PORT", "8000")))
        parser.add_argument("--setup-only", action="store_true", help="migrate, create users, seed; do not serve")
        parser.add_argument("--no-launch", action="store_true", help="seed data but do not launch the demo pipeline")

    def handle(self, *args, host: str, port: int, setup_only: bool, no_launch: bool, **options):
        started = time.monotonic()
        self.stdout.write("r1lab demo: migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        self._users()
        first_run = self._seed(no_launch=no_launch)
        if setup_only:
            return
        self._serve(host, port, started, first_run)

    # -- setup --------------------------------------------------------------------------------
    def _users(self) -> None:
        roles_ensure()
        User = get_user_model()
        created = []
        for username, role in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(9)
            user_create_with_role(username=username, password=password, role=role, is_staff=role is None)
            created.append((username, role or "staff", password))
        if created:
            path = settings.VAR_DIR / "demo_users.txt"
            with path.open("a") as fh:
                for username, role, password in created:
                    fh.write(f"{username}\t{role}\t{password}\n")
            path.chmod(0o600)
            self.stdout.write(self.style.SUCCESS("Demo users (passwords shown once; also in var/demo_users.txt):"))
            for username, role, password in created:
                self.stdout.write(f"  {username:<11} {role:<10} password: {password}")
        else:
            self.stdout.write("Demo users exist already (passwords: var/demo_users.txt).")

    def _seed(self, *, no_launch: bool) -> bool:
        marker = settings.VAR_DIR / "demo_seeded"
        first_run = not marker.exists()
        for app in settings.INSTALLED_APPS:
            if not app.startswith("r1lab."):
                continue
            try:
                module = importlib.import_module(f"{app}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"{app}.demo":
                    raise
                continue
            module.seed(stdout=self.stdout, first_run=first_run and not no_launch)
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
        return first_run

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, host: str, port: int, started: float, first_run: bool) -> None:
        env = os.environ.copy()
        env.setdefault("R1LAB_PUBLIC_URL", f"http://{host}:{port}")
        py = sys.executable
        log_dir = settings.VAR_DIR / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": [py, "-m", "daphne", "-b", host, "-p", str(port), "r1lab.asgi:application"],
            # One process on the gpu queue: one training stage at a time on this machine.
            "worker-gpu": [py, "-m", "celery", "-A", "r1lab", "worker", "-Q", "gpu", "-c", "1", "-n", "gpu@%h",
                           "--loglevel", "INFO"],
            # The default queue, plus beat for periodic jobs (lost-worker sweep, staleness).
            "worker-default": [py, "-m", "celery", "-A", "r1lab", "worker", "-Q", "default", "-c", "1",
                               "-n", "default@%h", "-B", "-s", str(settings.VAR_DIR / "celerybeat-schedule"),
                               "--loglevel", "INFO"],
        }
        procs: dict[str, subprocess.Popen] = {}

        def stop_all(*_):
            for name, proc in procs.items():
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 15
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

        def on_signal(signum, frame):
            raise KeyboardInterrupt

        # Explicitly: a shell may start us with SIGINT ignored (background job), and `kill`
        # sends SIGTERM; both must stop every process we started.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            for name, cmd in commands.items():
                log = open(log_dir / f"{name}.log", "ab")
                # Own process group each: Ctrl-C is handled here, and we stop the whole group.
                procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            url = f"http://{host}:{port}/"
            health = self._wait_healthy(url + "healthz", procs)
            elapsed = time.monotonic() - started
            self.stdout.write(self.style.SUCCESS(f"\nr1lab is up at {url}  (ready in {elapsed:.0f} s)"))
            self.stdout.write(f"  health: {json.dumps(health)}")
            self.stdout.write(f"  mode:   {_mode()}")
            self.stdout.write(f"  logs:   {log_dir}/{{web,worker-gpu,worker-default}}.log")
            if first_run:
                self.stdout.write("  a miniature R1-Zero run was launched: open Runs to watch it learn.")
            self.stdout.write("Press Ctrl-C to stop every process.\n")
            while True:
                for name, proc in procs.items():
                    code = proc.poll()
                    if code is not None:
                        raise CommandError(f"{name} exited with code {code}; see {log_dir}/{name}.log")
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            stop_all()
            self.stdout.write("All r1lab processes stopped.")

    def _wait_healthy(self, url: str, procs: dict, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise CommandError(f"{name} exited at start with code {proc.returncode}; see var/logs/{name}.log")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise CommandError(f"the web server did not become healthy in {timeout_s:.0f} s: {last}")
