"""Code reward: run the model's last ```python block against test snippets in a sandbox.

Model code is hostile. Each `run_sandboxed` call is one child process tree with:
- resource limits set before any model code runs: CPU seconds (RLIMIT_CPU), address space
  (RLIMIT_AS), processes (RLIMIT_NPROC), file size (RLIMIT_FSIZE), open files, no core dumps;
- a wall-clock deadline, after which the whole process group is SIGKILLed (`start_new_session`
  + `killpg`); with a PID namespace every process of the run dies with it even if it called
  `setsid()`; and the call returns only once nothing the throwaway uid owns is left (`kill -9
  -1` as that uid);
- when run as root: a throwaway uid/gid (not `nobody`, which concurrent runs would share, making
  RLIMIT_NPROC — a per-user count — leak between them, and whose files other runs could read).
  As a non-root user with no uid of its own, RLIMIT_NPROC cannot be made per-run and files the
  user can write stay writable: `user_isolated=False` says so;
- a private network namespace (`unshare --net`: loopback only) when available;
- a private mount namespace in which /tmp, /var/tmp, /dev/shm and /run/lock are one fresh
  64 MiB tmpfs that is also the working directory, so the only writable place is the run's own
  (everything else is root's and the uid is not root); otherwise a fresh temporary directory;
- a scrubbed environment (PATH, HOME, LANG only; `python -I` ignores PYTHON* variables), and the
  parent's /proc/<pid>/environ is unreadable to another uid.
`sandbox_capabilities()` probes once what this host allows; every `SandboxResult` carries the
flags, so a deployment without namespaces is visible in the metrics rather than silent.

The harness runs the solution once, then each test snippet in a copy of its namespace, writing
one result line per test tagged with a random nonce. Known limit (no sandbox fixes it): code in
the same interpreter can, with deliberate introspection (walking frames), find the nonce and
forge passes, or return objects whose `__eq__` is always true. Exiting early (`sys.exit(0)`,
`os._exit(0)`) scores 0, not 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from training_backend.rewards.parsing import extract_code

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 1024
MAX_PROCESSES = 16  # the run's own threads and children, all counted against its uid
MAX_FILE_BYTES = 16 << 20
TMPFS_SIZE = "64m"
# Interpreter start-up and namespace set-up are not the model's time: added to the deadline.
_STARTUP_GRACE_S = 2.0
_STDERR_TAIL = 2000
_REAP_TIMEOUT_S = 5.0
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Throwaway uids/gids, far above any real account and below the 32-bit overflow ids.
_UID_RANGE = (1_000_000_000, 2_000_000_000)

# Runs as `python -I -B -c RUNNER` inside the sandbox. Everything inside a function so that the
# solution's namespace (a fresh dict) does not see the harness's names by plain lookup.
RUNNER = r"""
def _harness():
    import json, os, resource, sys, traceback
    spec = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    for name, value in spec["limits"].items():
        res = getattr(resource, name)
        soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))
    out, write, nonce = os.dup(1), os.write, spec.pop("nonce").encode()
    os.dup2(2, 1)  # the solution's prints go to stderr; fd `out` carries results only
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(spec["code"], "<solution>", "exec"), ns)
        code_ok = True
    except BaseException:
        traceback.print_exc()
        code_ok = False
    for i, test in enumerate(spec["tests"]):
        ok = False
        if code_ok:
            try:
                exec(compile(test, "<test %d>" % i, "exec"), dict(ns))
                ok = True
            except BaseException:
                traceback.print_exc()
        write(out, b"%s %d %d\n" % (nonce, i, ok))
    sys.stderr.flush()
    os._exit(0)
_harness()
"""

# Inside the mount namespace: one tmpfs for every world-writable place, then drop to the uid.
_MOUNT_SCRIPT = (
    'set -e; mount -t tmpfs -o "size=$1,mode=0700,uid=$2,gid=$2" r1lab-sandbox /tmp; shift 2; '
    "for p in /var/tmp /dev/shm /run/lock; do if [ -d $p ]; then mount --bind /tmp $p; fi; done; "
    'cd /tmp; exec "$@"'
)


@dataclass(frozen=True)
class SandboxResult:
    passed: int  # tests that ran to completion
    total: int
    timed_out: bool  # the wall-clock deadline killed it
    network_isolated: bool  # ran in its own network namespace
    user_isolated: bool  # ran as a throwaway uid (RLIMIT_NPROC per run; no write outside tmp)
    tmp_isolated: bool  # /tmp etc. were its own tmpfs
    returncode: int | None
    stderr_tail: str  # last characters of the solution's output and tracebacks, for debugging

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class SandboxCapabilities:
    network: bool
    mounts: bool
    pid_namespace: bool
    user: bool
    python: str  # interpreter the sandbox runs (must be executable by the throwaway uid)


def _others_can_run(path: str) -> bool:
    """Can a uid that is neither owner nor group member execute `path` (every directory too)?"""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
    except OSError:
        return False


def _pick_python(want_other_uid: bool) -> str | None:
    candidates = [os.path.realpath(sys.executable)]
    for name in ("python3", "python"):
        found = shutil.which(name, path=_SAFE_PATH)
        if found:
            candidates.append(found)
    for c in candidates:
        if not want_other_uid or _others_can_run(c):
            return c
    return None


def _argv(caps: SandboxCapabilities, uid: int | None) -> list[str]:
    argv: list[str] = []
    if caps.network or caps.mounts or caps.pid_namespace:
        argv += ["unshare"]
        if os.geteuid() != 0:
            argv += ["--user", "--map-root-user"]
        if caps.network:
            argv += ["--net"]
        if caps.pid_namespace:
            argv += ["--pid", "--fork", "--kill-child"]
        if caps.mounts:
            argv += ["--mount", "--propagation", "private"]
            if caps.pid_namespace:
                argv += ["--mount-proc"]
        argv += ["--"]
        if caps.mounts:
            argv += ["sh", "-c", _MOUNT_SCRIPT, "sh", TMPFS_SIZE, str(uid if uid is not None else 0)]
    if uid is not None:
        argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return argv + [caps.python, "-I", "-B", "-c", RUNNER]


def _uid_alive(uid: int) -> bool:
    """Does a live (not zombie) process of `uid` exist? Zombies hold no resources; the host's
    init reaps the ones reparented to it on its own schedule."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[:1]
        except OSError:  # exited while we looked
            continue
        if state != [b"Z"]:
            return True
    return False


def _reap_uid(uid: int) -> None:
    """Return only once no process of the run's uid is left.

    A PID namespace's members die asynchronously after its init; without a namespace, processes
    that called setsid() escaped killpg. Either way `kill -9 -1` as the uid reaches them all.
    """
    deadline = time.monotonic() + _REAP_TIMEOUT_S
    while _uid_alive(uid):
        if time.monotonic() > deadline:
            log.error("sandbox uid %d still has processes after %.0f s", uid, _REAP_TIMEOUT_S)
            return
        _kill_uid(uid)
        time.sleep(0.01)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid`, including ones that left the process group via setsid()."""
    subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", "kill", "-9", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )


def _execute(
    caps: SandboxCapabilities, code: str, tests: Sequence[str], *, timeout_s: float, memory_mb: int
) -> SandboxResult:
    uid = secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) + _UID_RANGE[0] if caps.user else None
    nonce = secrets.token_hex(16)
    limits = {
        "RLIMIT_CPU": math.ceil(timeout_s) + 1,
        "RLIMIT_AS": memory_mb << 20,
        "RLIMIT_FSIZE": MAX_FILE_BYTES,
        "RLIMIT_NOFILE": 64,
        "RLIMIT_CORE": 0,
    }
    if caps.user:
        limits["RLIMIT_NPROC"] = MAX_PROCESSES  # per uid: meaningless for a shared one
    payload = json.dumps({"nonce": nonce, "code": code, "tests": list(tests), "limits": limits}).encode()
    workdir = tempfile.mkdtemp(prefix="r1lab-sandbox-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    env = {"PATH": _SAFE_PATH, "LANG": "C.UTF-8"}
    env["HOME"] = env["TMPDIR"] = "/tmp" if caps.mounts else workdir
    timed_out = False
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                _argv(caps, uid),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
            try:
                proc.communicate(payload, timeout=timeout_s + _STARTUP_GRACE_S)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
                if uid is not None:
                    _reap_uid(uid)
            out.seek(0)
            lines = out.read(1 << 20).split(b"\n")
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - _STDERR_TAIL))
            stderr_tail = err.read().decode("utf-8", errors="replace")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    prefix = nonce.encode() + b" "
    passed_ids = set()
    for line in lines:
        if line.startswith(prefix):
            parts = line[len(prefix) :].split(b" ")
            if len(parts) == 2 and parts[1] == b"1" and parts[0].isdigit():
                passed_ids.add(int(parts[0]))
    return SandboxResult(
        passed=len(passed_ids & set(range(len(tests)))),
        total=len(tests),
        timed_out=timed_out,
        network_isolated=caps.network,
        user_isolated=caps.user,
        tmp_isolated=caps.mounts,
        returncode=proc.returncode,
        stderr_tail=stderr_tail,
    )


_caps: SandboxCapabilities | None = None
_caps_lock = threading.Lock()


def sandbox_capabilities() -> SandboxCapabilities:
    """What isolation this host allows, probed once (each option is tried for real)."""
    global _caps
    with _caps_lock:
        if _caps is None:
            _caps = _probe()
        return _caps


def _probe() -> SandboxCapabilities:
    root = os.geteuid() == 0
    want_user = root and shutil.which("setpriv", path=_SAFE_PATH) is not None
    python = _pick_python(want_user)
    if python is None:  # no interpreter the throwaway uid may execute: run as ourselves
        want_user, python = False, _pick_python(False)
    if python is None:
        raise RuntimeError("no python interpreter found for the code sandbox")
    has_unshare = shutil.which("unshare", path=_SAFE_PATH) is not None
    options = [(True, True, True), (True, True, False), (True, False, False)] if has_unshare else []
    for network, mounts, pid in [*options, (False, False, False)]:
        for user in ([True, False] if want_user else [False]):
            caps = SandboxCapabilities(network=network, mounts=mounts, pid_namespace=pid, user=user, python=python)
            if _execute(caps, "", ["assert True"], timeout_s=10.0, memory_mb=DEFAULT_MEMORY_MB).passed == 1:
                return caps
    raise RuntimeError(f"cannot run even an unsandboxed python ({python}); code rewards are unavailable")


def run_sandboxed(
    code: str, tests: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB
) -> SandboxResult:
    """Run `code`, then each test snippet after it, in the sandbox; see the module docstring."""
    return _execute(sandbox_capabilities(), code, tests, timeout_s=timeout_s, memory_mb=memory_mb)


def code_reward(completion: str, tests: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Fraction of `tests` passed by the answer's last ```python block; 0.0 when there is none."""
    if not tests:
        return 0.0
    code = extract_code(completion)
    if code is None:
        return 0.0
    return run_sandboxed(code, tests, timeout_s=timeout_s).fraction


def code_rewards(
    completions: Sequence[object],
    *,
    tests: Sequence[Sequence[str] | None] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **_columns: object,
) -> list[float | None]:
    """Batch form. Reads `tests` (a list of snippets per row); None for rows with no tests."""
    if tests is None:
        return [None] * len(completions)
    rows = list(zip(completions, tests, strict=True))

    def one(row: tuple[object, Sequence[str] | None]) -> float | None:
        completion, row_tests = row
        return None if not row_tests else code_reward(completion, list(row_tests), timeout_s=timeout_s)

    # Runs wait on their children, not the CPU: a few in flight at once.
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(rows)))) as ex:
        return list(ex.map(one, rows))
