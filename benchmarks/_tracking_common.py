"""Shared by the tracking benchmarks: Django setup on DATABASE_URL (PostgreSQL), a real daphne
server on that database, percentiles."""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def setup_django() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("needs DATABASE_URL=postgres://… (a database of your own); skipping")
        sys.exit(0)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m daphne r1lab.asgi:application` on a free port (the production entry point), of
    this checkout or of another one (`root`: its templates and static files, this database)."""

    def __init__(self, env: dict | None = None, root: Path = ROOT):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (root / "var").mkdir(exist_ok=True)
        self.log = open(root / "var" / f"bench-daphne-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "r1lab.asgi:application"],
            cwd=root, env={**os.environ, "R1LAB_LOG_LEVEL": "WARNING", **(env or {})},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("daphne did not start")
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def pct(values, p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median(values) -> float:
    return statistics.median(values)


def machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_1_5_15_min": os.getloadavg()}  # the machine is shared: say how busy it was
