"""Hostile code, run for real. Each case is bounded by a ~1 s budget; the file takes ~15 s.

The worker runs as root here and in CI; the `worker` fixture plays a GPU host's non-root worker
(a uid of its own, owning its checkout and var/secret_key) through `setpriv`."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from training_backend.rewards import (
    SandboxRefused,
    code_reward,
    code_rewards,
    run_sandboxed,
    sandbox_capabilities,
    sandbox_isolation,
    set_unsandboxed_allowed,
)
from training_backend.rewards.sandbox import _pick_python

ROOT = Path(__file__).resolve().parents[2]

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def completion(code: str) -> str:
    return f"<think>easy</think>\n<answer>\n```python\n{code}\n```\n</answer>"


def sandbox_uids() -> set[int]:
    """Uids of live (non-zombie) processes in the throwaway range: nothing of a run may outlive it."""
    out = subprocess.run(["ps", "-eo", "uid=,stat="], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return {int(uid) for uid, stat in rows if int(uid) >= 1_000_000_000 and not stat.startswith("Z")}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def add(a, b):\n    return a + b", 1.0),
        ("def add(a, b):\n    return a + b if a > 0 else 7", 0.5),
        ("def add(a, b):\n    return a - b", 0.0),
        ("def add(a, b) return", 0.0),  # syntax error
        ("import sys\nsys.exit(0)", 0.0),  # exiting early is not passing
        ("import os\nos._exit(0)", 0.0),
        ("print('x' * 100)\ndef add(a, b):\n    return a + b", 1.0),  # output does not disturb results
    ],
)
def test_code_reward_scores_the_fraction_of_tests_passed(code, expected):
    assert code_reward(completion(code), TESTS, timeout_s=2.0) == expected


def test_no_code_block_or_no_tests_scores_zero_and_batch_skips_rows_without_tests():
    assert code_reward("<answer>add = lambda a, b: a + b</answer>", TESTS) == 0.0
    assert code_reward(completion("x = 1"), []) == 0.0
    good = completion("def add(a, b):\n    return a + b")
    assert code_rewards([good, good, "junk"], tests=[TESTS, None, TESTS], timeout_s=2.0) == [1.0, None, 0.0]
    assert code_rewards([good]) == [None]


def test_isolation_is_reported():
    caps = sandbox_capabilities()
    result = run_sandboxed("", ["assert True"], timeout_s=2.0)
    assert (result.network_isolated, result.user_isolated, result.tmp_isolated, result.mechanism) == (
        caps.network,
        caps.own_uid,
        caps.mounts,
        caps.mechanism,
    )
    if os.geteuid() == 0 and shutil.which("bwrap"):
        # This host (root, bubblewrap; CI installs it) gets every guarantee; a regression here is a real loss.
        isolation = sandbox_isolation()
        assert (isolation.level, isolation.mechanism, isolation.missing) == ("full", "bwrap", [])
        assert [g.name for g in isolation.guarantees] == ["uid", "filesystem", "/proc", "network", "pids", "limits"]
        assert caps.network and caps.user and caps.mounts and caps.pid_namespace


def test_a_forced_fallback_is_graded_and_model_code_is_refused_unless_opted_in(monkeypatch):
    """R1LAB_SANDBOX is the real switch an operator uses; `unshare` as root leaves the host's
    filesystem visible (partial), `none` isolates nothing."""
    monkeypatch.setenv("R1LAB_SANDBOX", "unshare")
    isolation = sandbox_isolation()
    assert (isolation.level, isolation.mechanism) == ("partial", "unshare")
    assert any(m.startswith("filesystem: ") and str(ROOT) in m for m in isolation.missing), isolation.missing
    good = completion("def add(a, b):\n    return a + b")
    with pytest.raises(SandboxRefused, match="partial .*filesystem: .*allow_unsandboxed_code"):
        run_sandboxed("x = 1", ["assert x == 1"], timeout_s=2.0)
    with pytest.raises(SandboxRefused):
        code_rewards([good], tests=[TESTS], timeout_s=2.0)
    assert run_sandboxed("x = 1", ["assert x == 1"], timeout_s=2.0, allow_unsandboxed=True).passed == 1
    set_unsandboxed_allowed(True)  # what a stage's allow_unsandboxed_code does for its process
    try:
        assert code_rewards([good], tests=[TESTS], timeout_s=2.0) == [1.0]
    finally:
        set_unsandboxed_allowed(False)

    monkeypatch.setenv("R1LAB_SANDBOX", "none")
    isolation = sandbox_isolation()
    assert (isolation.level, isolation.mechanism) == ("none", "none")
    assert {m.split(":")[0] for m in isolation.missing} == {"uid", "filesystem", "/proc", "network", "pids"}


def test_infinite_loop_is_killed_on_time():
    started = time.monotonic()
    result = run_sandboxed("while True:\n    pass", ["assert True"], timeout_s=1.0)
    assert result.passed == 0
    # budget + start-up grace + slack for a loaded host (RLIMIT_CPU usually ends it at ~2 s)
    assert time.monotonic() - started < 1.0 + 2.0 + 2.0


def test_sleeping_past_the_wall_clock_is_killed():
    started = time.monotonic()
    result = run_sandboxed("import time\ntime.sleep(60)", ["assert True"], timeout_s=0.5)
    assert result.passed == 0 and result.timed_out
    assert time.monotonic() - started < 0.5 + 2.0 + 1.0


def test_memory_bomb_fails_and_the_caller_is_fine():
    result = run_sandboxed("x = bytearray(8 * 1024 ** 3)", ["assert True"], timeout_s=2.0)
    assert result.passed == 0
    assert "MemoryError" in result.stderr_tail


def test_fork_storm_is_contained_and_leaves_nothing_behind():
    before = sandbox_uids()
    code = "import os\nfor _ in range(10_000):\n    try:\n        os.fork()\n    except OSError:\n        pass\nimport time\ntime.sleep(30)"
    started = time.monotonic()
    result = run_sandboxed(code, ["assert True"], timeout_s=1.0)
    assert result.passed == 0
    assert time.monotonic() - started < 1.0 + 2.0 + 2.0
    assert sandbox_uids() - before == set()


def test_setsid_escapee_is_killed_too():
    before = sandbox_uids()
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)"
    run_sandboxed(code, ["assert True"], timeout_s=0.5)
    assert sandbox_uids() - before == set()


def test_writes_outside_its_directory_fail(tmp_path):
    target = tmp_path / "pwned.txt"
    shared_tmp = f"/tmp/r1lab-sandbox-pwned-{os.getpid()}.txt"
    code = f"open({str(target)!r}, 'w').write('x')"
    assert run_sandboxed(code, ["assert True"], timeout_s=2.0).passed == 0
    assert not target.exists()
    # /tmp is world-writable on the host: the run must get its own.
    result = run_sandboxed(f"open({shared_tmp!r}, 'w').write('x')", ["assert True"], timeout_s=2.0)
    assert not os.path.exists(shared_tmp)
    if result.tmp_isolated:
        assert result.passed == 1  # it may write there: its own /tmp, gone with it
    # Its working directory is writable, up to the file-size limit.
    assert run_sandboxed("open('ok.txt', 'w').write('x')", ["assert open('ok.txt').read() == 'x'"], timeout_s=2.0).passed == 1
    assert run_sandboxed("open('big', 'wb').write(b'0' * (64 << 20))", ["assert True"], timeout_s=2.0).passed == 0


def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("R1LAB_TEST_SECRET", "hunter2")
    code = (
        "import os\n"
        "leak = 'hunter2' in str(os.environ)\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        leak = leak or b'hunter2' in open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except (OSError, ValueError):\n"
        "        pass\n"
        f"for pid in ({os.getpid()}, os.getppid()):\n"
        "    try:\n"
        "        leak = leak or b'hunter2' in open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    assert run_sandboxed(code, ["assert not leak"], timeout_s=2.0).passed == 1


def test_network_is_blocked():
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=0.5).close()\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n"
    )
    result = run_sandboxed(code, ["assert not reached"], timeout_s=2.0)
    if not result.network_isolated:
        pytest.skip("no network namespace on this host (reported as network_isolated=False)")
    assert result.passed == 1


# ------------------------------------------------------------------------------------------------
# A non-root worker (how GPU hosts run workers): the sandbox must hide the worker's own files and
# processes from model code, which runs with the worker's uid on the host.


@dataclass
class Worker:
    uid: int
    python: str
    checkout: Path  # the worker's own copy of the code, as a non-root deployment has
    secret: Path  # stand-in for var/secret_key: 0600, owned by the worker

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--", self.python, "-c", script, *args],
            cwd=self.checkout, capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.checkout), "PYTHONPATH": str(self.checkout),
                 "LANG": "C.UTF-8", **env})

    def run_sandboxed(self, code: str, tests: list[str], *, timeout_s: float = 2.0, marker: str = "") -> dict:
        """run_sandboxed as the worker, while another process of the worker's (its argv and
        environment carry `marker`) runs beside it; then which of its processes are left."""
        result = self.run(_AS_WORKER, json.dumps({"code": code, "tests": tests, "timeout_s": timeout_s, "marker": marker}))
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


_AS_WORKER = r"""
import json, os, subprocess, sys
from training_backend.rewards.sandbox import run_sandboxed
a = json.loads(sys.argv[1])
marker = subprocess.Popen(["sh", "-c", "read x", "marker", a["marker"]], stdin=subprocess.PIPE,
                          env={"PATH": "/usr/bin:/bin", "MARKER": a["marker"]})
r = run_sandboxed(a["code"], a["tests"], timeout_s=a["timeout_s"])
left = []
for pid in os.listdir("/proc"):
    try:
        if pid.isdigit() and int(pid) not in (os.getpid(), marker.pid) and os.stat("/proc/" + pid).st_uid == os.getuid():
            if open("/proc/%s/stat" % pid).read().rpartition(")")[2].split()[0] != "Z":
                left.append(pid)
    except OSError:
        pass
marker.kill()
marker.wait()
print(json.dumps({"passed": r.passed, "timed_out": r.timed_out, "mechanism": getattr(r, "mechanism", None),
                  "stderr": r.stderr_tail, "left": left}))
"""


@pytest.fixture(scope="module")
def worker():
    if os.geteuid() != 0:
        pytest.skip("playing a non-root worker needs root (setpriv to another uid)")
    python = _pick_python(True)
    if python is None or not all(os.stat(p).st_mode & 0o001 for p in [ROOT, *ROOT.parents]):
        pytest.skip("needs an interpreter and a checkout folder another uid may reach")
    uid = 900_000_000 + secrets.randbelow(90_000_000)  # below the sandbox's throwaway range
    base = ROOT / "var" / f"sandbox-worker-{uid}"
    (ROOT / "var").mkdir(exist_ok=True)
    try:
        shutil.copytree(ROOT / "training_backend", base / "training_backend", ignore=shutil.ignore_patterns("__pycache__"))
        secret = base / "var" / "secret_key"
        secret.parent.mkdir()
        secret.write_text(secrets.token_hex(16))
        secret.chmod(0o600)
        for folder, dirs, files in os.walk(base):
            for name in [folder, *(os.path.join(folder, f) for f in dirs + files)]:
                os.chown(name, uid, uid)
        base.chmod(0o700)
        os.chmod(ROOT / "var", os.stat(ROOT / "var").st_mode | 0o005)  # others may pass through var/ to their folder
        yield Worker(uid=uid, python=python, checkout=base, secret=secret)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_non_root_model_code_cannot_read_or_write_the_workers_files(worker):
    """Before bwrap, a non-root worker's sandbox ran as the worker's uid on the host's filesystem:
    model code read var/secret_key, listed the project and wrote into it."""
    pwned = worker.checkout / "var" / "pwned"
    code = (
        "import os\n"
        "def attempt(f, *a):\n"
        "    try:\n"
        "        return f(*a)\n"
        "    except OSError:\n"
        "        return None\n"
        f"secret = attempt(lambda: open({str(worker.secret)!r}).read())\n"
        f"own_checkout = attempt(os.listdir, {str(worker.checkout)!r})\n"
        f"project = attempt(os.listdir, {str(ROOT)!r})\n"
        f"wrote = attempt(lambda: open({str(pwned)!r}, 'w').write('x'))\n"
    )
    tests = ["assert secret is None", "assert own_checkout is None", "assert project is None", "assert wrote is None"]
    out = worker.run_sandboxed(code, tests)
    assert out["passed"] == 4, out["stderr"]
    assert out["mechanism"] == "bwrap"
    assert not pwned.exists()


def test_non_root_model_code_sees_no_other_process_and_no_network_and_leaves_nothing(worker):
    """Before bwrap, model code was root of its own user namespace: it unmounted the fresh /proc
    and read the worker's other processes' command lines."""
    nonce = secrets.token_hex(8)
    listener = socket.create_server(("127.0.0.1", 0))  # stands in for the database and the queue
    port = listener.getsockname()[1]
    code = (
        "import ctypes, os, socket\n"
        "def scan():\n"
        "    hits = []\n"
        "    try:\n"
        "        pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "    except OSError:\n"
        "        return hits\n"
        "    for pid in pids:\n"
        "        for what in ('cmdline', 'environ'):\n"
        "            try:\n"
        f"                if {nonce!r}.encode() in open(f'/proc/{{pid}}/{{what}}', 'rb').read():\n"
        "                    hits.append(what)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return hits\n"
        "seen = scan()\n"
        "ctypes.CDLL(None).umount2(b'/proc', 2)  # with capabilities, the host's /proc lies beneath\n"
        "seen += scan()\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=0.5).close()\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n"
    )
    with listener:
        out = worker.run_sandboxed(code, ["assert seen == []", "assert not reached"], marker=nonce)
    assert out["passed"] == 2, out["stderr"]
    assert out["left"] == []
    # A process that leaves the group and outlives the deadline dies with the run's PID namespace.
    escapee = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)"
    started = time.monotonic()
    out = worker.run_sandboxed(escapee, ["assert True"], timeout_s=0.5)
    assert out["timed_out"] and out["left"] == []
    assert time.monotonic() - started < 0.5 + 2.0 + 3.0


def test_non_root_sandbox_check_says_full_and_names_what_a_fallback_misses(worker):
    result = worker.run("import sys, training_backend.__main__ as m; sys.exit(m.main(['sandbox-check']))")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("code sandbox: full (mechanism: bwrap")
    assert [line.split()[0] for line in lines[1:7]] == ["uid:", "filesystem:", "/proc:", "network:", "pids:", "limits:"]
    assert all(line.split()[1] == "ok" for line in lines[1:7])
    # util-linux unshare, the old mechanism: root of its own user namespace over the worker's uid.
    result = worker.run("import sys, training_backend.__main__ as m; sys.exit(m.main(['sandbox-check']))",
                        R1LAB_SANDBOX="unshare")
    assert result.returncode != 0 and result.stdout.startswith("code sandbox: partial (mechanism: unshare")
    missing = {line.split()[0] for line in result.stdout.splitlines() if "MISSING" in line}
    assert {"uid:", "filesystem:", "/proc:"} <= missing, result.stdout
