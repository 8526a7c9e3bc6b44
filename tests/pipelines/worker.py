"""Real Celery workers and the tiny base model for the pipeline tests.

`start_worker(...)` runs `celery -A r1lab worker` as a subprocess on the *test* database and the
Redis broker (REDIS_URL), in its own process group; `tiny_base()` builds the tiny base model
once into var/test-cache/ (keyed by the trainer's tiny.py) and reuses it across sessions.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_STEPS = 30  # enough for a model that writes tokens; quality does not matter to these tests


def tiny_base() -> Path:
    """The tiny base model folder, built by `python -m training_backend make-base` on first use."""
    digest = hashlib.sha1((ROOT / "training_backend" / "tiny.py").read_bytes()).hexdigest()[:10]
    out = ROOT / "var" / "test-cache" / f"tiny-base-s{BASE_STEPS}-{digest}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions build it once
        if not (out / "config.json").exists():
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            subprocess.run([sys.executable, "-m", "training_backend", "make-base", str(tmp), "--steps", str(BASE_STEPS)],
                           cwd=ROOT, check=True, capture_output=True, timeout=900)
            tmp.rename(out)
    return out


@dataclass
class Worker:
    proc: subprocess.Popen
    log_path: Path
    name: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """`kill -9` the worker's main process only: its pool process and trainer must follow."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass


def purge_queues() -> None:
    """Stale messages from an earlier session must not reach this session's workers."""
    from r1lab.celery import app

    with app.connection_for_write() as conn:
        for q in ("gpu", "default"):
            conn.default_channel.queue_purge(q)


def start_worker(env: dict, log_dir: Path, *, queues: str = "gpu", beat: bool = False,
                 timeout_s: float = 90) -> Worker:
    if not env.get("REDIS_URL"):
        import pytest

        pytest.skip("the real-worker tests need REDIS_URL (Redis broker)")
    name = f"{queues.replace(',', '-')}-{uuid.uuid4().hex[:6]}"
    log_path = log_dir / f"worker-{name}.log"
    cmd = [sys.executable, "-m", "celery", "-A", "r1lab", "worker", "-Q", queues, "-c", "1", "-n", f"{name}@%h",
           "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    if beat:
        cmd += ["-B", "-s", str(log_dir / f"beat-{name}")]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while "ready." not in (log_path.read_text(errors="replace") if log_path.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"celery worker did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    return Worker(proc, log_path, name)


def worker_env(base_env: dict, *, data_dir: Path, public_url: str, heartbeat_timeout_s: int = 45,
               sweep_s: int = 10) -> dict:
    env = dict(base_env)
    env.update({
        "R1LAB_DATA_DIR": str(data_dir), "R1LAB_PUBLIC_URL": public_url,
        "R1LAB_HEARTBEAT_TIMEOUT_S": str(heartbeat_timeout_s), "R1LAB_LOST_SWEEP_S": str(sweep_s),
        "OMP_NUM_THREADS": "1",
    })
    return env


def wait_for(predicate, *, timeout_s: float, what: str, interval_s: float = 0.25, logs=()):
    """Poll `predicate` until it returns something truthy; fail with the workers' logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in logs)
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")
        time.sleep(interval_s)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
