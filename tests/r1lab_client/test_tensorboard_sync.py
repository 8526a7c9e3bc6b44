"""`python -m r1lab_client sync-tensorboard` against the real server: a SummaryWriter writes while
the sync follows its folder; the sync is stopped, more is written (to the same event file and to
a new one), the sync restarts; every scalar is stored once, and the restart sends only the new."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1lab.tracking.models import Point, Run

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _sync(logdir, url, token, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "r1lab_client", "sync-tensorboard", str(logdir), "--url", url,
                             "--token", token, "--name", "tb-live", "--project", "tb", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _points(name: str) -> dict:
    run = Run.objects.filter(name=name).first()
    if run is None:
        return {}
    return {(key, step): value for key, step, value in
            Point.objects.filter(series__run=run).values_list("series__key", "step", "value")}


def _wait_for(predicate, proc, timeout=60.0):
    """Until the server holds what the sync was given (it polls every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sync did not deliver in time"
        time.sleep(0.1)


def _synced(out: str) -> dict:
    line = [x for x in out.splitlines() if x.startswith("synced:")][-1]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def _write(writer, steps):
    for step in steps:
        writer.add_scalar("train/reward", step / 10, step)
        writer.add_scalar("train/kl", step / 1000, step)
    writer.flush()


def test_scalars_arrive_live_and_a_restart_sends_only_what_is_new(r1lab_url, personal_token, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "tb"
    writer = SummaryWriter(str(logdir))
    _write(writer, range(0, 5))
    writer.add_text("notes", "not a scalar", 0)  # other plugins are skipped
    sync = _sync(logdir, r1lab_url, personal_token, "--follow", "--interval", "0.2")
    try:
        _wait_for(lambda: len(_points("tb-live")) == 10, sync)
        _write(writer, range(5, 10))  # written while the sync follows the file
        _wait_for(lambda: len(_points("tb-live")) == 20, sync)
    finally:
        sync.send_signal(signal.SIGTERM)  # stops after a last poll, state saved
        out, err = sync.communicate(timeout=60)
    assert sync.returncode == 0, err
    assert _synced(out)["points"] == 20 and _synced(out)["skipped"] == 1

    _write(writer, range(10, 13))  # the same event file grows while no sync runs
    writer.close()
    resumed = SummaryWriter(str(logdir))  # a resumed trainer: a second event file
    _write(resumed, range(13, 15))
    resumed.close()
    again = _sync(logdir, r1lab_url, personal_token)  # one pass, then finish
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert _synced(out)["points"] == 10  # only the new scalars were sent

    points = _points("tb-live")
    assert sorted(points) == sorted((k, s) for s in range(15) for k in ("train/reward", "train/kl"))
    assert all(points[("train/reward", s)] == pytest.approx(s / 10) for s in range(15))
    assert points[("train/reward", 3)] == 0.3  # float32 in the file, its shortest decimal here
    run = Run.objects.get(name="tb-live")
    assert run.project == "tb" and run.status == "succeeded" and run.config["source"] == "tensorboard"
    state = json.loads((logdir / ".r1lab-sync-tensorboard.json").read_text())
    assert sorted(f["records"] for f in state["files"].values()) == [5, 28]  # version + scalars (+ text)
    assert (logdir / ".r1lab-sync-tensorboard.json").stat().st_mode & 0o077 == 0  # it holds the run token
