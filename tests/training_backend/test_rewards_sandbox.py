"""Hostile code, run for real. Each case is bounded by a ~1 s budget; the file takes ~10 s."""

import os
import subprocess
import sys
import time

import pytest

from training_backend.rewards import code_reward, code_rewards, run_sandboxed, sandbox_capabilities

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
    assert (result.network_isolated, result.user_isolated, result.tmp_isolated) == (
        caps.network,
        caps.user,
        caps.mounts,
    )
    if os.geteuid() == 0 and sys.platform == "linux":
        # This host (root, util-linux) can isolate everything; a regression here is a real loss.
        assert caps.network and caps.user and caps.mounts and caps.pid_namespace


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
