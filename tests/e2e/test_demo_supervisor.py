"""`manage.py demo` keeps the lab up when one of its processes dies (issue 15, finding 3).

Before: the supervisor loop raised on the first child that exited and its `finally` stopped the
rest, so `kill -9` of the gpu worker took the web server and the default worker down too.
The real command, embedded (SQLite + filesystem broker under a temporary R1LAB_VAR_DIR), as
.ci/smoke-embedded starts it. No pipeline is launched: that a trainer dies with its killed
worker and its stage is marked `failed (worker lost)` is tests/e2e/test_pipelines_worker.py's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, _free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _ours(var_dir: Path) -> dict[int, tuple[int, str]]:
    """Every live process started under this demo (children inherit R1LAB_VAR_DIR), with its
    process group and command line: the children, their prefork pool and beat processes."""
    found = {}
    marker = f"R1LAB_VAR_DIR={var_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] != "Z":
                found[int(entry.name)] = (int(stat[2]), _cmdline(int(entry.name)))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


def _wait_for(what: str, predicate, timeout_s: float, proc: subprocess.Popen, out: Path):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s (demo exit code {proc.poll()}):\n{out.read_text()[-3000:]}")
        time.sleep(0.2)


def _leaders(var_dir: Path) -> dict[str, int]:
    """The demo's three children, found in /proc (each leads its own process group)."""
    names = {"daphne": "web", "worker -Q gpu": "worker-gpu", "worker -Q default": "worker-default"}
    return {name: pid for pid, (pgid, cmd) in _ours(var_dir).items() if pid == pgid
            for needle, name in names.items() if needle in cmd}


def _healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
        return resp.status


def test_kill_9_of_the_gpu_worker_restarts_it_and_the_rest_keeps_serving(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(R1LAB_VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    port = _free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as log:
        # Own session, as in the smoke test: the SIGINT at the end reaches only the demo, like Ctrl-C.
        demo = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port), "--no-launch"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file = tmp_path / "demo.pids.json"
    seen: set[int] = set()
    try:
        _wait_for("the demo is up", lambda: "r1lab is up at" in out.read_text(), 240, demo, out)
        before = _leaders(tmp_path)
        assert set(before) == {"web", "worker-gpu", "worker-default"}
        assert json.loads(pid_file.read_text()) == before
        seen.update(before.values())
        os.kill(before["worker-gpu"], signal.SIGKILL)

        def restarted():
            assert _healthz(port) == 200  # served all along
            pids = _leaders(tmp_path)
            new = pids.get("worker-gpu")
            return pids if new and new != before["worker-gpu"] and _alive(new) else None

        after = _wait_for("a new gpu worker", restarted, 60, demo, out)
        seen.update(after.values())
        assert "worker -Q gpu" in _cmdline(after["worker-gpu"])
        # The killed worker's pool process did not linger: every gpu-queue process is the new one's.
        gpu_groups = {pgid for pgid, cmd in _ours(tmp_path).values() if "worker -Q gpu" in cmd}
        assert gpu_groups == {after["worker-gpu"]}
        assert _wait_for("the pid file", lambda: json.loads(pid_file.read_text()) == after, 5, demo, out)
        assert after["web"] == before["web"] and _alive(before["web"])
        assert after["worker-default"] == before["worker-default"] and _alive(before["worker-default"])
        assert _healthz(port) == 200
        text = out.read_text()
        assert f"worker-gpu (pid {before['worker-gpu']}) exited with code -9" in text
        assert f"worker-gpu restarted: pid {after['worker-gpu']}" in text
        assert f"restarted: pid {after['worker-gpu']}" in (tmp_path / "logs" / "demo.log").read_text()
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
    assert "All r1lab processes stopped." in out.read_text()
    # Nothing left: neither the children nor theirs (the prefork pool, beat).
    assert _ours(tmp_path) == {} and not [pid for pid in seen if _alive(pid)]
