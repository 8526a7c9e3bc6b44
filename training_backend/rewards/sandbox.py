"""Code reward: run the model's last ```python block against test snippets in a sandbox.

Model code is hostile. Each `run_sandboxed` call is one child process tree, started by one of
three mechanisms, the strongest this host allows (`R1LAB_SANDBOX` = auto | bwrap | unshare | none
forces one; auto is the default):
- `bwrap` (bubblewrap, Debian package `bubblewrap`), run unprivileged: as root it is first
  dropped to a throwaway uid (`setpriv`), as a normal user it runs as that user. Either way the
  program gets its own user, mount, PID, network, IPC and UTS namespaces, no capabilities, no
  further user namespaces; its root is an empty read-only tmpfs holding only the system dirs
  (/usr, /lib*, /bin, /sbin and the interpreter's prefix, read-only) and /etc/ld.so.cache, a
  fresh /proc of its own PID namespace, a minimal /dev, and two 64 MiB tmpfs (/tmp, its working
  directory, and /dev/shm) as the only writable places. The project, the data dirs, the home,
  /var/lib/postgresql, the database and queue sockets do not exist in it; loopback only.
- `unshare` (util-linux), the previous mechanism, kept for hosts without bubblewrap: a network
  namespace, a mount namespace whose /tmp, /var/tmp, /dev/shm, /run/lock are one fresh tmpfs, a
  PID namespace with a fresh /proc, and as root a throwaway uid. The host's filesystem stays
  visible (what the uid may read, it reads); as a normal user it runs as the worker's own uid,
  root of its own user namespace, able to unmount the fresh /proc and read the host's.
- `none`: the worker's own uid with only the resource limits below.
`sandbox_isolation()` runs a probe program in the chosen sandbox once per process (it tries to
read a file the worker owns and the project dir, write beside them, read another process's
/proc/<pid>/cmdline and environ, also after unmounting /proc, reach a socket on the host's
loopback, fork past the process limit) and grades it: `full` (every guarantee holds), `partial`
(`missing` names each one that does not), `none`. `run_sandboxed` refuses to run model code
(SandboxRefused, a ConfigError) unless the level is `full` or the caller opted in
(`allow_unsandboxed`, or `set_unsandboxed_allowed(True)`: a stage's `allow_unsandboxed_code`).
`python -m training_backend sandbox-check` prints the grading.

Whatever the mechanism, every run also has:
- resource limits set before any model code runs: CPU seconds (RLIMIT_CPU), address space
  (RLIMIT_AS), file size (RLIMIT_FSIZE), open files, no core dumps, and when the run has a uid
  of its own (a throwaway uid, or bwrap's user namespace, whose process count is its own)
  processes (RLIMIT_NPROC);
- a wall-clock deadline, after which the whole run is SIGKILLed: its process group (`killpg`),
  with bwrap the init of its PID namespace (the kernel kills every process of the namespace with
  it, even ones that called `setsid()`; the call returns once bwrap has reaped it, i.e. once the
  namespace is empty), with a throwaway uid every process of that uid (`kill -9 -1` as the uid);
- a throwaway uid, as root, that is not `nobody` (which concurrent runs would share, making
  RLIMIT_NPROC — a per-user count — leak between them, and whose files other runs could read);
- a scrubbed environment (PATH, HOME, LANG, TMPDIR only; `python -I` ignores PYTHON* variables).

The harness runs the solution once, then each test snippet in a copy of its namespace, writing
one result line per test tagged with a random nonce. Known limit (no sandbox fixes it): code in
the same interpreter can, with deliberate introspection (walking frames), find the nonce and
forge passes, or return objects whose `__eq__` is always true. Exiting early (`sys.exit(0)`,
`os._exit(0)`) scores 0, not 1.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import secrets
import shutil
import signal
import socket
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

from training_backend.config import ConfigError
from training_backend.rewards.parsing import extract_code

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 1024
MAX_PROCESSES = 16  # the run's own threads and children, all counted against its uid
MAX_FILE_BYTES = 16 << 20
TMPFS_SIZE = "64m"
TMPFS_BYTES = 64 << 20
# Interpreter start-up and namespace set-up are not the model's time: added to the deadline.
_STARTUP_GRACE_S = 2.0
_STDERR_TAIL = 2000
_REAP_TIMEOUT_S = 5.0
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Throwaway uids/gids, far above any real account and below the 32-bit overflow ids.
_UID_RANGE = (1_000_000_000, 2_000_000_000)
# The uid (and gid) the program has inside bwrap's user namespace when the host uid is the worker's.
_INNER_UID = 1_000
# `R1LAB_SANDBOX`: which mechanism to use; a real switch (operators force a fallback with it, the
# tests force an incomplete sandbox with it).
SANDBOX_ENV = "R1LAB_SANDBOX"
MODES = ("auto", "bwrap", "unshare", "none")
FULL, PARTIAL, NONE = "full", "partial", "none"
# System dirs bound read-only into bwrap's empty root (symlinks, as in merged-/usr systems, are
# recreated as symlinks).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache",)

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
    user_isolated: bool  # ran as a uid of its own (RLIMIT_NPROC per run; no write outside tmp)
    tmp_isolated: bool  # /tmp etc. were its own tmpfs
    returncode: int | None
    stderr_tail: str  # last characters of the solution's output and tracebacks, for debugging
    mechanism: str = "none"  # SandboxCapabilities.mechanism

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class SandboxCapabilities:
    network: bool
    mounts: bool
    pid_namespace: bool
    user: bool  # a throwaway host uid (root only)
    python: str  # interpreter the sandbox runs (must be executable by the throwaway uid)
    mechanism: str = "unshare"  # bwrap | unshare | setpriv (a throwaway uid, no namespace) | none
    bwrap: str | None = None  # the bwrap executable, when mechanism == "bwrap"
    # bwrap run as root without a user namespace (hosts that disable them), dropping to the
    # throwaway uid inside the sandbox; otherwise bwrap runs unprivileged in a user namespace.
    bwrap_as_root: bool = False
    notes: tuple[str, ...] = ()  # why stronger mechanisms were not used

    @property
    def own_uid(self) -> bool:
        """Does the run have a uid of its own, so that RLIMIT_NPROC counts only its processes?
        (bwrap's fresh user namespace counts processes per namespace, kernel 5.14+.)"""
        return self.user or self.mechanism == "bwrap"


@dataclass(frozen=True)
class Guarantee:
    name: str  # uid | filesystem | /proc | network | pids | limits (sandbox-check's lines, in order)
    ok: bool
    detail: str  # what holds, or what the probe got through


@dataclass(frozen=True)
class Isolation:
    """What the probe program found it could and could not do in this host's sandbox."""

    level: str  # full | partial | none
    mechanism: str
    guarantees: tuple[Guarantee, ...]
    notes: tuple[str, ...] = ()

    @property
    def missing(self) -> list[str]:
        return [f"{g.name}: {g.detail}" for g in self.guarantees if not g.ok]

    def record(self, *, unsandboxed_allowed: bool = False) -> dict:
        """The `code_sandbox` entry of a stage's outputs.json."""
        return {"level": self.level, "mechanism": self.mechanism, "missing": self.missing,
                "unsandboxed_allowed": unsandboxed_allowed}


class SandboxRefused(ConfigError):
    """Model code would run in a sandbox that is not `full` and nobody opted in: a spec error
    (exit 2), naming what is missing and the way out."""

    def __init__(self, isolation: Isolation, field_name: str = "allow_unsandboxed_code"):
        self.isolation = isolation
        missing = "; ".join(isolation.missing) or "no isolation at all"
        super().__init__({field_name: (
            f"the code reward runs model code, and this host's code sandbox is {isolation.level} "
            f"({isolation.mechanism}), not full: missing {missing}. Install bubblewrap (docs/security.md, "
            f"check with `python -m training_backend sandbox-check`) or set allow_unsandboxed_code: true")})


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


def _python_prefix(python: str) -> str:
    """The installation `python` runs from (its stdlib and extension modules live under it)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return os.path.realpath(sys.base_prefix)
    return str(Path(os.path.realpath(python)).parent.parent)


def _bound_paths(caps: SandboxCapabilities) -> list[str]:
    """Host paths bwrap makes visible (read-only) besides its own /proc, /dev and tmpfs."""
    paths = [d for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    paths += [f for f in _SYSTEM_FILES if os.path.isfile(f)]
    prefix = _python_prefix(caps.python)
    if not any(prefix == d or prefix.startswith(d + "/") for d in paths):
        paths.append(prefix)
    return paths


def _bwrap_args(caps: SandboxCapabilities, inner_uid: int, info_fd: int) -> list[str]:
    argv = [caps.bwrap or "bwrap"]
    if caps.bwrap_as_root:  # namespaces by root's own privilege; the uid drop happens inside
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        tmp_perms = "01777"  # root owns the tmpfs; the throwaway uid is the only one in there
    else:
        argv += ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(inner_uid), "--gid", str(inner_uid)]
        tmp_perms = "0700"  # the sandbox's uid owns it
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--info-fd", str(info_fd)]
    prefix = _python_prefix(caps.python)
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
    for path in _bound_paths(caps):
        if path != prefix:
            argv += ["--ro-bind", path, path]
    argv += ["--size", str(TMPFS_BYTES), "--perms", tmp_perms, "--tmpfs", "/tmp"]
    if prefix in _bound_paths(caps):  # after /tmp, which would hide an interpreter installed under it
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(TMPFS_BYTES), "--perms", tmp_perms, "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
    return argv


def _setpriv(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _argv(caps: SandboxCapabilities, uid: int | None, info_fd: int = -1) -> list[str]:
    argv: list[str] = []
    if caps.mechanism == "bwrap":
        if uid is not None and not caps.bwrap_as_root:
            argv += _setpriv(uid)  # root: become the throwaway uid first; bwrap then runs unprivileged
        argv += _bwrap_args(caps, uid if uid is not None else _INNER_UID, info_fd) + ["--"]
        if uid is not None and caps.bwrap_as_root:
            argv += _setpriv(uid)
        return argv + [caps.python, "-I", "-B", "-c", RUNNER]
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
        argv += _setpriv(uid)
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
        [*_setpriv(uid), "kill", "-9", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _stop_bwrap(proc: subprocess.Popen, info) -> None:
    """Kill the init of the run's PID namespace (the kernel kills every other member with it),
    then let bwrap reap it: once bwrap has exited, the namespace is empty."""
    if proc.poll() is not None:
        return
    info.seek(0)
    try:
        init = int(json.loads(info.read().decode() or "{}").get("child-pid", 0))
    except (ValueError, AttributeError):
        init = 0
    # Only while it is still bwrap's child: a reaped pid may already name someone else.
    if init and _parent_pid(init) == proc.pid:
        try:
            os.kill(init, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("bwrap did not exit %.0f s after its namespace's init was killed", _REAP_TIMEOUT_S)


def _execute(
    caps: SandboxCapabilities,
    code: str,
    tests: Sequence[str],
    *,
    timeout_s: float,
    memory_mb: int,
    stderr_tail: int = _STDERR_TAIL,
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
    if caps.own_uid:
        limits["RLIMIT_NPROC"] = MAX_PROCESSES  # per uid: meaningless for a shared one
    payload = json.dumps({"nonce": nonce, "code": code, "tests": list(tests), "limits": limits}).encode()
    workdir = tempfile.mkdtemp(prefix="r1lab-sandbox-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    env = {"PATH": _SAFE_PATH, "LANG": "C.UTF-8"}
    env["HOME"] = env["TMPDIR"] = "/tmp" if caps.mounts else workdir
    timed_out = False
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as info:
            bwrap = caps.mechanism == "bwrap"
            proc = subprocess.Popen(
                _argv(caps, uid, info.fileno() if bwrap else -1),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=(info.fileno(),) if bwrap else (),
            )
            try:
                proc.communicate(payload, timeout=timeout_s + _STARTUP_GRACE_S)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if bwrap:
                    _stop_bwrap(proc, info)
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
            err.seek(max(0, err.tell() - stderr_tail))
            tail = err.read().decode("utf-8", errors="replace")
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
        user_isolated=caps.own_uid,
        tmp_isolated=caps.mounts,
        returncode=proc.returncode,
        stderr_tail=tail,
        mechanism=caps.mechanism,
    )


# ------------------------------------------------------------------------------------------------
# Which mechanism this host allows, and what it really isolates


def sandbox_mode() -> str:
    """The `R1LAB_SANDBOX` setting (auto when unset)."""
    return os.environ.get(SANDBOX_ENV, "").strip() or "auto"


_caps: dict[str, SandboxCapabilities] = {}
_isolation: dict[str, Isolation] = {}
_caps_lock = threading.Lock()
_policy = {"allow_unsandboxed": False}


def sandbox_capabilities() -> SandboxCapabilities:
    """The mechanism for this host and `R1LAB_SANDBOX`, probed once per setting (each option is
    tried for real)."""
    mode = sandbox_mode()
    with _caps_lock:
        if mode not in _caps:
            _caps[mode] = _probe(mode)
        return _caps[mode]


def _works(caps: SandboxCapabilities) -> tuple[bool, str]:
    """Does a trivial program pass in this sandbox? (and the last line of its stderr, for the notes)"""
    result = _execute(caps, "", ["assert True"], timeout_s=10.0, memory_mb=DEFAULT_MEMORY_MB)
    lines = result.stderr_tail.strip().splitlines()
    return result.passed == 1, lines[-1] if lines else f"exit {result.returncode}"


def _probe(mode: str) -> SandboxCapabilities:
    notes: list[str] = []
    if mode not in MODES:
        notes.append(f"{SANDBOX_ENV}={mode!r} is not one of {', '.join(MODES)}: no sandbox")
    root = os.geteuid() == 0
    want_user = root and shutil.which("setpriv", path=_SAFE_PATH) is not None
    python = _pick_python(want_user)
    if python is None:  # no interpreter the throwaway uid may execute: run as ourselves
        notes.append("no python interpreter that another uid may execute: no throwaway uid")
        want_user, python = False, _pick_python(False)
    if python is None:
        raise RuntimeError("no python interpreter found for the code sandbox")
    if mode in ("auto", "bwrap"):
        bwrap = shutil.which("bwrap", path=_SAFE_PATH)
        if bwrap is None:
            notes.append("bwrap: not installed (Debian package bubblewrap)")
        elif root and not want_user:
            notes.append("bwrap: as root it needs setpriv and an interpreter a throwaway uid may execute")
        else:
            # Unprivileged (a user namespace) first; as root without user namespaces, bwrap as root.
            for as_root in [False, True] if root else [False]:
                caps = SandboxCapabilities(network=True, mounts=True, pid_namespace=True, user=root, python=python,
                                           mechanism="bwrap", bwrap=bwrap, bwrap_as_root=as_root)
                ok, why = _works(caps)
                if ok:
                    return dataclasses.replace(caps, notes=tuple(notes))
                notes.append(f"bwrap {'as root' if as_root else 'in a user namespace'} does not run here: {why}")
    if mode in ("auto", "unshare"):
        has_unshare = shutil.which("unshare", path=_SAFE_PATH) is not None
        if not has_unshare:
            notes.append("unshare: not installed (util-linux)")
        options = [(True, True, True), (True, True, False), (True, False, False)] if has_unshare else []
        for network, mounts, pid in [*options, (False, False, False)]:
            for user in ([True, False] if want_user else [False]):
                if not (network or mounts or pid or user):
                    continue  # that is `none`
                caps = SandboxCapabilities(network=network, mounts=mounts, pid_namespace=pid, user=user,
                                           python=python, mechanism="unshare" if network else "setpriv",
                                           notes=tuple(notes))
                if _works(caps)[0]:
                    return caps
        notes.append("unshare: no namespace or throwaway uid works here")
    caps = SandboxCapabilities(network=False, mounts=False, pid_namespace=False, user=False, python=python,
                               mechanism="none", notes=tuple(notes))
    if not _works(caps)[0]:
        raise RuntimeError(f"cannot run even an unsandboxed python ({python}); code rewards are unavailable")
    return caps


def sandbox_isolation() -> Isolation:
    """The level of this host's sandbox (under the current `R1LAB_SANDBOX`), found by running the
    probe program in it once per process and setting."""
    caps = sandbox_capabilities()
    mode = sandbox_mode()
    with _caps_lock:
        if mode not in _isolation:
            _isolation[mode] = _grade(caps, _run_probe(caps))
        return _isolation[mode]


def set_unsandboxed_allowed(allowed: bool) -> None:
    """The process-wide opt-in (a stage's `allow_unsandboxed_code`): run model code even when the
    sandbox is not full."""
    _policy["allow_unsandboxed"] = bool(allowed)


def require_isolation(allow_unsandboxed: bool | None = None, *, field_name: str = "allow_unsandboxed_code") -> dict:
    """The `code_sandbox` record when model code may run here; SandboxRefused when the sandbox is
    not full and neither `allow_unsandboxed` nor the process-wide opt-in allows it."""
    isolation = sandbox_isolation()
    allowed = _policy["allow_unsandboxed"] if allow_unsandboxed is None else allow_unsandboxed
    if isolation.level != FULL and not allowed:
        raise SandboxRefused(isolation, field_name)
    return isolation.record(unsandboxed_allowed=isolation.level != FULL)


def code_sandbox_for_rows(rows: list[dict], allow_unsandboxed: bool) -> dict:
    """For a sampling stage (eval, rejection sampling): rows with `tests` run model code (the code
    check), so the stage is refused up front (SandboxRefused: exit 2, before a model loads) unless
    the sandbox is full or the stage opts in. `{"code_sandbox": record}` for outputs.json, or {}."""
    if not any(r.get("tests") for r in rows):
        return {}
    record = require_isolation(allow_unsandboxed)
    set_unsandboxed_allowed(allow_unsandboxed)
    return {"code_sandbox": record}


# The probe: runs as the solution in the harness, inside the sandbox; reports what it got through
# as one JSON line on stderr. It only reads and tries; nothing it does outlives the run.
PROBE = r"""
import ctypes, json, os, resource, socket, sys
P = json.loads(%r)
R = {}

def readable(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError:
        return None

status = readable("/proc/self/status") or b""
cap_eff = status.split(b"CapEff:")[1].split()[0].decode() if b"CapEff:" in status else "?"
R["uid"] = {"uid": os.getuid(), "uid_map": (readable("/proc/self/uid_map") or b"?").decode().split(),
            "cap_eff": cap_eff}

seen = []
for path in P["private"]:
    if not os.path.lexists(path):
        continue
    allowed = P["skeleton"].get(path)
    try:
        entries = sorted(os.listdir(path)) if os.path.isdir(path) else None
    except OSError:
        entries = None
    if allowed is None or (entries is not None and not set(entries) <= set(allowed)):
        seen.append(path)
try:
    own_mounts = os.readlink("/proc/self/ns/mnt") != P["host_mnt_ns"]
except OSError:
    own_mounts = False
# Writes to / and /usr and unmounting /proc are tried only in a mount namespace of its own: in the
# host's (no sandbox, as root) they would change the host.
wrote = []
for target in [os.path.join(P["secret_dir"], "pwned")] + (["/pwned", "/usr/pwned"] if own_mounts else []):
    try:
        with open(target, "w") as f:
            f.write("x")
        wrote.append(os.path.dirname(target) or "/")
        os.unlink(target)
    except OSError:
        pass
R["filesystem"] = {"seen": seen, "read_secret": readable(P["secret"]) is not None, "wrote": wrote}

def find_marker():
    hits = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return hits, 0
    for pid in pids:
        for what in ("cmdline", "environ"):
            data = readable("/proc/%%s/%%s" %% (pid, what))
            if data and P["nonce"].encode() in data:
                hits.append(what)
    return sorted(set(hits)), len(pids)

hits, visible = find_marker()
pidns = None
try:
    pidns = os.readlink("/proc/self/ns/pid")
except OSError:
    pass
unmounted = False
if own_mounts:
    try:
        unmounted = ctypes.CDLL(None, use_errno=True).umount2(b"/proc", 2) == 0
    except OSError:
        pass
if unmounted:
    more, _ = find_marker()
    hits = sorted(set(hits) | set(more))
R["proc"] = {"hits": hits, "visible": visible, "pidns": pidns, "unmounted": unmounted}

reached = False
try:
    socket.create_connection(("127.0.0.1", P["port"]), timeout=0.5).close()
    reached = True
except OSError:
    pass
try:
    ifaces = sorted(name for _, name in socket.if_nameindex())
except OSError:
    ifaces = []
R["network"] = {"reached": reached, "ifaces": ifaces}

r, w = os.pipe()
forks = 0
for _ in range(P["fork_tries"]):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    forks += 1
os.close(w)
for _ in range(forks):
    os.wait()
R["pids"] = {"forks": forks}
R["limits"] = {name: resource.getrlimit(getattr(resource, name))[0] for name in P["limits"]}
sys.stderr.write("\nR1LAB_PROBE " + json.dumps(R) + "\n")
sys.stderr.flush()
"""
_PROBE_PREFIX = "R1LAB_PROBE "


def project_dir() -> Path:
    """The checkout (or install) training_backend runs from: the code, and var/ with its secrets."""
    return Path(__file__).resolve().parents[2]


def _private_paths() -> list[str]:
    """Host paths model code must not see: the project, the data dirs, the home, the database.
    (One that lies under a bound system dir is visible, and the probe says so.)"""
    candidates = [str(project_dir()), os.getcwd(), os.environ.get("HOME", ""), "/var/lib/postgresql",
                  "/var/lib/redis", "/etc", "/root", "/home", os.environ.get("R1LAB_DATA_DIR", ""),
                  os.environ.get("R1LAB_VAR_DIR", "")]
    out: list[str] = []
    for c in candidates:
        p = os.path.realpath(c) if c else "/"
        if p not in out and p != "/":
            out.append(p)
    return out


def _skeleton(caps: SandboxCapabilities) -> dict[str, list[str]]:
    """Directories bwrap creates on the way to what it binds (e.g. /home/w/.pyenv for an
    interpreter installed there): each may exist in the sandbox holding only those next steps."""
    if caps.mechanism != "bwrap":
        return {}
    skel: dict[str, set[str]] = {}
    for path in _bound_paths(caps):
        parts = Path(path).parts
        for i in range(1, len(parts) - 1):
            skel.setdefault(str(Path(*parts[: i + 1])), set()).add(parts[i + 1])
    return {k: sorted(v) for k, v in skel.items()}


def _secret_dir() -> str:
    """A fresh directory the worker owns, outside every tmp dir, for the probe's stand-in secret."""
    for base in (project_dir() / "var", project_dir(), Path.home(), Path.cwd()):
        if base.is_dir() and os.access(base, os.W_OK):
            try:
                return tempfile.mkdtemp(prefix=".r1lab-sandbox-probe-", dir=base)
            except OSError:
                continue
    return tempfile.mkdtemp(prefix="r1lab-sandbox-probe-")


def _run_probe(caps: SandboxCapabilities) -> dict:
    nonce = secrets.token_hex(16)
    secret_dir = _secret_dir()
    secret = os.path.join(secret_dir, "secret_key")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(nonce)
    # Another process of the worker's, with the nonce in its command line and environment.
    marker = subprocess.Popen(["sh", "-c", "read x", "r1lab-probe-marker", nonce], stdin=subprocess.PIPE,
                              env={"PATH": _SAFE_PATH, "R1LAB_PROBE_MARKER": nonce}, close_fds=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        params = {"private": _private_paths(), "skeleton": _skeleton(caps), "secret": secret,
                  "host_mnt_ns": os.readlink("/proc/self/ns/mnt"),
                  "secret_dir": secret_dir, "nonce": nonce, "port": listener.getsockname()[1],
                  "fork_tries": 3 * MAX_PROCESSES,
                  "limits": ["RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_NPROC"]}
        # The code reward's own limits, so that the `limits` line reports what model code gets.
        result = _execute(caps, PROBE % json.dumps(params), ["assert True"], timeout_s=DEFAULT_TIMEOUT_S,
                          memory_mb=DEFAULT_MEMORY_MB, stderr_tail=1 << 16)
    finally:
        listener.close()
        marker.kill()
        marker.wait()
        shutil.rmtree(secret_dir, ignore_errors=True)
    for line in reversed(result.stderr_tail.splitlines()):
        if line.startswith(_PROBE_PREFIX):
            report = json.loads(line[len(_PROBE_PREFIX):])
            report["_params"] = params
            return report
    raise RuntimeError(f"the sandbox probe did not report (exit {result.returncode}): {result.stderr_tail[-500:]}")


def _grade(caps: SandboxCapabilities, report: dict) -> Isolation:
    """Turn what the probe got through into one verdict per guarantee."""
    params = report["_params"]
    me = os.geteuid()
    g: list[Guarantee] = []

    u = report["uid"]
    in_userns = u["uid_map"][:3] != ["0", "0", "4294967295"]
    has_caps = u["cap_eff"] not in ("0000000000000000", "0")
    if not in_userns and u["uid"] == me:
        g.append(Guarantee("uid", False, f"runs as the worker's own uid {me}{' with its capabilities' if has_caps else ''}"))
    elif has_caps:
        g.append(Guarantee("uid", False, f"has capabilities (CapEff {u['cap_eff']}) as uid {u['uid']} of its own "
                                         f"user namespace, over host uid {me}: it can unmount its /proc and mounts"))
    elif caps.user:
        g.append(Guarantee("uid", True, f"a throwaway uid per run{' in its own user namespace' if in_userns else ''}, "
                                        "owning no file, no capabilities"))
    else:
        g.append(Guarantee("uid", True, f"uid {u['uid']} of its own user namespace (host uid {me}, none of whose "
                                        "files is mounted), no capabilities"))

    f = report["filesystem"]
    leaks = []
    if f["read_secret"]:
        leaks.append(f"read a file the worker owns ({params['secret']})")
    if f["wrote"]:
        leaks.append(f"wrote in {', '.join(f['wrote'])}")
    if f["seen"]:
        leaks.append(f"sees {', '.join(f['seen'])}")
    if leaks:
        g.append(Guarantee("filesystem", False, "; ".join(leaks)))
    else:
        g.append(Guarantee("filesystem", True, "an empty read-only root with the system dirs read-only; no project, "
                                               "data, home or database dirs; writes only to its own /tmp and "
                                               f"/dev/shm ({TMPFS_BYTES >> 20} MiB tmpfs each)"))

    p = report["proc"]
    host_pidns = os.readlink("/proc/self/ns/pid")
    if p["hits"]:
        how = " after unmounting /proc" if p["unmounted"] else ""
        g.append(Guarantee("/proc", False, f"read another process's {' and '.join(p['hits'])}{how}"))
    elif p["pidns"] == host_pidns:
        g.append(Guarantee("/proc", False, "the host's /proc (no PID namespace): other processes are listed"))
    elif p["unmounted"]:
        g.append(Guarantee("/proc", False, "could unmount its /proc"))
    else:
        g.append(Guarantee("/proc", True, f"a fresh /proc of its own PID namespace ({p['visible']} processes visible)"))

    n = report["network"]
    if n["reached"]:
        g.append(Guarantee("network", False, f"reached a socket on the host's loopback (127.0.0.1:{params['port']})"))
    elif set(n["ifaces"]) - {"lo"}:
        g.append(Guarantee("network", False, f"has network interfaces {', '.join(sorted(set(n['ifaces']) - {'lo'}))}"))
    else:
        g.append(Guarantee("network", True, "its own network namespace: loopback only"))

    forks = report["pids"]["forks"]
    if forks >= params["fork_tries"]:
        g.append(Guarantee("pids", False, f"no per-run process limit (forked {forks} processes)"))
    elif p["pidns"] == host_pidns and not caps.user:
        g.append(Guarantee("pids", False, "no PID namespace and no uid of its own: a process that calls setsid() "
                                          "outlives the deadline"))
    else:
        g.append(Guarantee("pids", True, f"at most {MAX_PROCESSES} processes; all killed at the deadline"))

    lim = report["limits"]
    unset = [k for k in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE") if lim.get(k, -1) < 0]
    if unset or lim.get("RLIMIT_CORE") != 0:
        g.append(Guarantee("limits", False, f"not set: {', '.join(unset) or 'RLIMIT_CORE'}"))
    else:
        g.append(Guarantee("limits", True, f"CPU {lim['RLIMIT_CPU']} s, memory {lim['RLIMIT_AS'] >> 20} MiB, "
                                           f"files {lim['RLIMIT_FSIZE'] >> 20} MiB, {lim['RLIMIT_NOFILE']} fds, "
                                           "no core dumps; wall-clock deadline"))

    if caps.mechanism == "none":
        level = NONE
    else:
        level = FULL if all(x.ok for x in g) else PARTIAL
    return Isolation(level=level, mechanism=caps.mechanism, guarantees=tuple(g), notes=caps.notes)


def run_sandboxed(
    code: str,
    tests: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    allow_unsandboxed: bool | None = None,
) -> SandboxResult:
    """Run `code`, then each test snippet after it, in the sandbox; see the module docstring.

    SandboxRefused when the sandbox is not full, unless `allow_unsandboxed` (None: the
    process-wide `set_unsandboxed_allowed`) says to run it anyway."""
    require_isolation(allow_unsandboxed)
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
