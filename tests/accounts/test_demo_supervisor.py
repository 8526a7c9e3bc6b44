"""The demo supervisor's restart policy, on throwaway processes (the real `manage.py demo` is
tests/e2e/test_demo_supervisor.py)."""
import re
import time

from r1lab.lab.management.commands.demo import Supervisor


class Quick(Supervisor):
    BACKOFF_START_S = 0.05
    BACKOFF_MAX_S = 0.2
    POLL_S = 0.01


def _delays_until(sup: Supervisor, lines: list[str], restarts: int) -> list[float]:
    """Run the supervisor (started already) until the crasher was restarted `restarts` times."""
    deadline = time.monotonic() + 30
    while sup.children["crasher"]["restarts"] < restarts and time.monotonic() < deadline:
        sup.check()
        time.sleep(sup.POLL_S)
    return [float(m.group(1)) for line in lines if (m := re.search(r"restarting in ([\d.]+) s", line))]


def _supervisor(cls, tmp_path, lines, command="exit 3"):
    return cls({"crasher": ["/bin/sh", "-c", command], "steady": ["/bin/sh", "-c", "sleep 60"]}, env={},
               log_dir=tmp_path, pid_file=tmp_path / "pids.json", say=lines.append)


def test_a_crashing_child_is_restarted_with_doubling_backoff_and_the_others_keep_running(tmp_path):
    lines: list[str] = []
    sup = _supervisor(Quick, tmp_path, lines)
    sup.start_all()
    steady = sup.children["steady"]["proc"]
    try:
        delays = _delays_until(sup, lines, 5)
    finally:
        sup.stop_all()
    assert delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert sup.children["steady"]["proc"] is steady and steady.returncode == -15  # never restarted; stopped
    assert "crasher (pid" in lines[0] and "exited with code 3" in lines[0]
    log = (tmp_path / "demo.log").read_text()
    assert "restart #1" in log and "crasher restarted: pid" in log
    assert "restart #1" in (tmp_path / "crasher.log").read_text()
    assert not (tmp_path / "pids.json").exists()


def test_the_backoff_starts_over_after_a_child_stayed_up(tmp_path):
    class StableAtOnce(Quick):
        STABLE_AFTER_S = 0.0  # every run counts as a stable one

    lines: list[str] = []
    sup = _supervisor(StableAtOnce, tmp_path, lines)
    sup.start_all()
    try:
        delays = _delays_until(sup, lines, 3)
    finally:
        sup.stop_all()
    assert delays[:3] == [0.05, 0.05, 0.05]
