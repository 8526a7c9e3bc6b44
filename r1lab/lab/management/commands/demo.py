"""`make demo`: migrate, create demo users, seed demo data, serve, and stop cleanly on Ctrl-C.

Idempotent: a second run reuses the database, the users and the seeded data. Each app may
provide `r1lab/<app>/demo.py` with `seed(*, stdout, first_run: bool) -> None`; they run in
INSTALLED_APPS order (so pipelines can use what tracking seeded).
"""
from __future__ import annotations

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
from r1lab.curation import demo as curation_demo
from r1lab.pipelines import demo as pipelines_demo

DEMO_USERS = [(role, role) for role in ROLES] + [("admin", None)]


def _mode() -> str:
    """What this configuration runs on (anonymous /healthz says only ok/down)."""
    from django.db import connection

    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    broker = "redis" if settings.REDIS_URL else "filesystem"
    return f"database={connection.vendor} broker={broker} channel_layer={layer}"


PID_FILE = "demo.pids.json"


class Supervisor:
    """Starts the demo's processes and keeps them running.

    Each child runs in its own session (process group): Ctrl-C in the terminal reaches only
    this process, which stops the groups itself, and a group holds what the child started
    (celery's prefork pool, beat). A child that dies is restarted after a backoff that starts
    at BACKOFF_START_S and doubles up to BACKOFF_MAX_S, back to the start once a child has
    stayed up STABLE_AFTER_S; the others keep running. Before this, the first death ended the
    loop and `finally` stopped everything: `kill -9` of the gpu worker took the web server and
    the other worker down with it.

    What is left of a dead child's group (pool processes orphaned by a `kill -9` of their
    parent) is killed before the restart; a trainer started by the gpu worker dies with its pool
    process (PR_SET_PDEATHSIG, pipelines/runner.py), and its stage is then marked `failed
    (worker lost)` by the lost-worker sweep, as before."""

    BACKOFF_START_S = 1.0
    BACKOFF_MAX_S = 60.0
    STABLE_AFTER_S = 60.0
    POLL_S = 0.2
    STOP_GRACE_S = 15.0

    def __init__(self, commands: dict[str, list[str]], *, env: dict, log_dir, pid_file, say):
        self.commands, self.env, self.log_dir, self.pid_file, self.say = commands, env, log_dir, pid_file, say
        self.children = {name: {"proc": None, "started": 0.0, "backoff": self.BACKOFF_START_S, "restart_at": None,
                                "restarts": 0} for name in commands}

    def procs(self) -> dict[str, subprocess.Popen]:
        return {name: c["proc"] for name, c in self.children.items() if c["proc"] is not None}

    def start_all(self) -> None:
        for name in self.commands:
            self._start(name)

    def _start(self, name: str) -> None:
        child = self.children[name]
        with open(self.log_dir / f"{name}.log", "ab") as log:
            child["proc"] = subprocess.Popen(self.commands[name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        child["started"] = time.monotonic()
        child["restart_at"] = None
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {name: c["proc"].pid for name, c in self.children.items() if c["proc"] is not None}
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids))
        tmp.replace(self.pid_file)

    def _log(self, line: str, name: str | None = None) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.say(line)
        for target in ["demo"] + ([name] if name else []):
            with open(self.log_dir / f"{target}.log", "a") as log:
                log.write(f"{stamp} [r1lab demo] {line}\n")

    @staticmethod
    def _kill_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def check(self) -> None:
        """One pass: note deaths, schedule restarts, restart what is due."""
        now = time.monotonic()
        for name, child in self.children.items():
            proc = child["proc"]
            if proc is not None:
                code = proc.poll()
                if code is None:
                    continue
                up_s = now - child["started"]
                self._kill_group(proc.pid, signal.SIGKILL)  # its pool / beat, orphaned by a kill -9
                if up_s >= self.STABLE_AFTER_S:
                    child["backoff"] = self.BACKOFF_START_S
                delay = child["backoff"]
                child["backoff"] = min(delay * 2, self.BACKOFF_MAX_S)
                child["proc"], child["restart_at"] = None, now + delay
                child["restarts"] += 1
                self._log(f"{name} (pid {proc.pid}) exited with code {code} after {up_s:.0f} s; "
                          f"restarting in {delay:g} s (restart #{child['restarts']})", name)
            elif child["restart_at"] is not None and now >= child["restart_at"]:
                self._start(name)
                self._log(f"{name} restarted: pid {child['proc'].pid}", name)

    def run_forever(self) -> None:
        while True:
            self.check()
            time.sleep(self.POLL_S)

    def stop_all(self) -> None:
        """SIGTERM to every child's group, SIGKILL to what is left after STOP_GRACE_S (a celery
        worker waits for its running task on SIGTERM). A dead child's group was killed when it
        died; no other group is signalled (its number could belong to someone else by now)."""
        current = [c["proc"] for c in self.children.values() if c["proc"] is not None]
        for proc in current:
            if proc.poll() is None:
                self._kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.STOP_GRACE_S
        for proc in current:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            # Children's children (pool processes, beat) that outlived their parent: the group
            # id stays theirs while any of them lives.
            self._kill_group(proc.pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


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
        self._serve(host, port, started, first_run and not no_launch)

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
        for seed in (pipelines_demo.seed, curation_demo.seed):
            seed(stdout=self.stdout, first_run=first_run and not no_launch)
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
        supervisor = Supervisor(commands, env=env, log_dir=log_dir, pid_file=settings.VAR_DIR / PID_FILE,
                                say=self._say)

        def on_signal(signum, frame):
            raise KeyboardInterrupt

        # Explicitly: a shell may start us with SIGINT ignored (background job), and `kill`
        # sends SIGTERM; both must stop every process we started.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            supervisor.start_all()
            url = f"http://{host}:{port}/"
            health = self._wait_healthy(url + "healthz", supervisor.procs())
            elapsed = time.monotonic() - started
            self.stdout.write(self.style.SUCCESS(f"\nr1lab is up at {url}  (ready in {elapsed:.0f} s)"))
            self.stdout.write(f"  health: {json.dumps(health)}")
            self.stdout.write(f"  mode:   {_mode()}")
            self.stdout.write(f"  logs:   {log_dir}/{{web,worker-gpu,worker-default,demo}}.log")
            self.stdout.write(f"  pids:   {settings.VAR_DIR / PID_FILE}")
            if first_run:
                self.stdout.write("  a miniature R1-Zero run was launched: open Runs to watch it learn.")
            self.stdout.write("A process that dies is restarted (1 s, doubling to 60 s). Press Ctrl-C to stop every process.\n")
            self.stdout.flush()
            supervisor.run_forever()
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            # A second Ctrl-C must not cut the stop short and leave processes behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            supervisor.stop_all()
            self.stdout.write("All r1lab processes stopped.")

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _wait_healthy(self, url: str, procs: dict, timeout_s: float = 120) -> dict:
        # A death before the lab is up is not restarted: it is a configuration problem (the port
        # is taken, the database is locked) that a restart would only repeat.
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
