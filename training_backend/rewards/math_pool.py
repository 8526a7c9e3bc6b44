"""The pool of math-verify worker processes behind the accuracy reward: who runs a (gold, answer)
pair that `math_equivalence` could not decide, with a deadline.

math-verify's own timeout uses SIGALRM, which only works in the main thread; a Celery worker
thread, a web request thread or a trainer's reward thread is not. So the sympy path runs in a
small pool of persistent child processes (`_math_worker.py`), each request with a deadline. A
child process can be killed when sympy hangs, which a thread cannot; the caller gets a False
verdict for that pair (accuracy caches it: the same pathological answer does not hang every
group member) and the pool starts a fresh worker. Workers are started with `subprocess`
(fork+exec of a fresh interpreter), never `multiprocessing` fork, so a parent holding CUDA or
torch threads is safe, and daemonic Celery pool processes can use it too.

Almost all of this path's time is math-verify's own work on distinct strings: parsing LaTeX
(latex2sympy's ANTLR parser) and sympy's comparison; pipes and preparation are noise. So a
worker parses each string once (its own cache), parses SLL-first (same trees, ~3x cheaper; see
`_math_worker.py`) and keeps the start states of LL predictions, warms its parser while idle,
skips `simplify` on differences it shows nonzero (false verdicts' main cost) and `solve` on two
proportional polynomial equations (same verdicts, see there); and the distinct pairs of a call
are handed out by gold (`_GoldQueue`): the G answers of a prompt go to the worker that parses
that prompt's gold, preferably one that parsed it in an earlier step.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

_WORKER_STARTUP_S = 60.0  # importing sympy + math-verify takes ~1-2 s; generous for a loaded host
_WORKER_PATH = Path(__file__).with_name("_math_worker.py")
_GOLDS_REMEMBERED = 4096  # per worker, see _MathWorker.golds


class MathWorkerError(RuntimeError):
    """The sympy worker could not be started: a broken install, not bad model output."""


class _WorkerGone(Exception):
    """The worker timed out or died mid-request; it has been killed."""


class _MathWorker:
    def __init__(self) -> None:
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", str(_WORKER_PATH)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: killpg reaches anything it spawned
                close_fds=True,
            )
        except OSError as e:
            raise MathWorkerError(f"cannot start the math-verify worker with {sys.executable}: {e}") from e
        self._buf = b""
        # Golds this worker has parsed recently (its parse cache holds 8192 strings): a hint
        # for sending it the same prompt's next answers, which then skip the gold's parse.
        self.golds: OrderedDict[str, None] = OrderedDict()
        try:
            ready = self._read_line(time.monotonic() + _WORKER_STARTUP_S)
        except _WorkerGone:
            ready = b""
        if ready != b"ready":
            self.kill()
            raise MathWorkerError(
                f"the math-verify worker ({sys.executable} {_WORKER_PATH}) did not start; "
                "is math-verify installed in this interpreter?"
            )

    def _read_line(self, deadline: float) -> bytes:
        fd = self._proc.stdout.fileno()
        poller = select.poll()  # not select.select: a web process may hold fds above 1024
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                self.kill()
                raise _WorkerGone("timeout")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.kill()
                raise _WorkerGone("died")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.strip()

    def send(self, payload: object) -> None:
        try:
            self._proc.stdin.write(json.dumps(payload).encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            self.kill()
            raise _WorkerGone("died") from e

    def request(self, payload: object, timeout_s: float) -> bytes:
        self.send(payload)
        return self._read_line(time.monotonic() + timeout_s)

    def remember(self, gold: str) -> None:
        self.golds[gold] = None
        self.golds.move_to_end(gold)
        if len(self.golds) > _GOLDS_REMEMBERED:
            self.golds.popitem(last=False)

    def kill(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._proc.wait()


class _WorkerPool:
    """At most `size` workers, started on demand, each used by one thread at a time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_MathWorker] = []
        self._count = 0
        self._cond = threading.Condition()
        self._pid = os.getpid()

    def _forget_if_forked(self) -> None:
        # A forked child (Celery prefork) inherits the parent's pipes: those workers are the
        # parent's to use and kill, so the child starts its own.
        if os.getpid() != self._pid:
            self._idle, self._count, self._pid = [], 0, os.getpid()
            self._cond = threading.Condition()

    def acquire(self) -> _MathWorker:
        self._forget_if_forked()
        with self._cond:
            while not self._idle and self._count >= self.size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return _MathWorker()
        except MathWorkerError:
            self._discard()
            raise

    def release(self, worker: _MathWorker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify()

    def ask(self, worker: _MathWorker, payload: object, timeout_s: float) -> bytes | None:
        """`worker`'s answer line, or None when it timed out or died (it is then discarded)."""
        try:
            return worker.request(payload, timeout_s)
        except _WorkerGone as e:
            log.warning("math-verify worker %s after %.1f s; counted as not equivalent", e, timeout_s)
            self._discard()
            return None

    def clear_parse_caches(self) -> None:
        """Empty the idle workers' parse caches; busy ones keep theirs (a benchmark clears idle)."""
        self._forget_if_forked()
        with self._cond:
            idle, self._idle = self._idle, []
        for worker in idle:
            try:
                worker.request("clear", _WORKER_STARTUP_S)
            except _WorkerGone:
                self._discard()
                continue
            worker.golds.clear()
            self.release(worker)

    def shutdown(self) -> None:
        self._forget_if_forked()
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.kill()


_pool = _WorkerPool(size=max(1, min(4, os.cpu_count() or 1)))
atexit.register(_pool.shutdown)


def set_math_workers(n: int) -> None:
    """How many sympy worker processes the accuracy reward may run at once (default: min(4, CPUs))."""
    if n < 1:
        raise ValueError(f"need at least one math worker, got {n}")
    _pool.shutdown()
    _pool.size = n


def warm_up() -> None:
    """Start every sympy worker now and wait until each has warmed its parser (a few seconds:
    importing sympy, then `_math_worker.WARM_UP`), instead of paying that on the first hard
    answers. Without this call, workers start on demand and warm up while idle."""
    workers = [_pool.acquire() for _ in range(_pool.size)]
    ready = []
    for worker in workers:
        try:
            worker.send("warm")
            ready.append(worker)
        except _WorkerGone:
            _pool._discard()
    deadline = time.monotonic() + _WORKER_STARTUP_S
    for worker in ready:
        try:
            worker._read_line(deadline)
        except _WorkerGone:
            _pool._discard()
            continue
        _pool.release(worker)


def math_workers() -> int:
    """How many sympy worker processes may run at once (see `set_math_workers`)."""
    return _pool.size


def clear_parse_caches() -> None:
    """Empty the idle workers' parse caches, keeping the started workers (benchmarks; tests)."""
    _pool.clear_parse_caches()


class _GoldQueue:
    """The pairs of one call grouped by gold, handed out so that each gold is parsed by as few
    workers as possible: a worker keeps to its gold while it has answers left, then takes a gold
    nobody works on (one it parsed before first), and only when none is left helps with the
    gold that has the most answers left (parsing that gold a second time beats idling)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._answers: dict[str, deque[str]] = {}
        for gold, answer in pairs:
            self._answers.setdefault(gold, deque()).append(answer)
        self._workers_on: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, current: str | None, known: Container[str]) -> tuple[str, str] | None:
        with self._lock:
            if current is None or not self._answers[current]:
                if current is not None:
                    self._workers_on[current] -= 1
                live = [gold for gold, answers in self._answers.items() if answers]
                if not live:
                    return None
                fresh = [gold for gold in live if not self._workers_on[gold]]
                if fresh:
                    current = next((gold for gold in fresh if gold in known), fresh[0])
                else:
                    current = max(live, key=lambda gold: len(self._answers[gold]))
                self._workers_on[current] += 1
            return current, self._answers[current].popleft()


def _drain(queue: _GoldQueue, timeout_s: float, results: dict[tuple[str, str], bool]) -> None:
    """One worker's share of a call: pairs from `queue` until it is empty."""
    worker: _MathWorker | None = _pool.acquire()
    gold = None
    try:
        while (job := queue.take(gold, worker.golds if worker else ())) is not None:
            gold, answer = job
            if worker is None:  # the last one timed out and was killed
                worker = _pool.acquire()
            line = _pool.ask(worker, [gold, answer], timeout_s)
            if line is None:
                worker = None
            else:
                worker.remember(gold)
            results[job] = line == b"1"
    finally:
        if worker is not None:
            _pool.release(worker)


def sympy_verdicts(
    pairs: Sequence[tuple[str, str]],
    timeout_s: float,
    meanwhile: Callable[[], dict[tuple[str, str], bool]] = dict,
) -> dict[tuple[str, str], bool]:
    """math-verify's verdict on each distinct prepared pair, on up to `_pool.size` workers;
    `meanwhile` (the caller's own share, see accuracy's `_verdicts`) runs in this thread as they work."""
    results: dict[tuple[str, str], bool] = {}
    queue = _GoldQueue(pairs)
    threads = min(_pool.size, len(pairs))
    if threads == 0:
        return meanwhile()
    ex = _drain_threads(_pool.size)
    drains = [ex.submit(_drain, queue, timeout_s, results) for _ in range(threads)]
    own = meanwhile()
    for done in drains:
        done.result()  # a worker that cannot start raises MathWorkerError here
    results.update(own)
    return results


_executor: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, size, threads)
_executor_lock = threading.Lock()


def _drain_threads(size: int) -> ThreadPoolExecutor:
    """The threads that talk to the workers, kept between calls (starting them cost ~1 ms a call);
    new ones in a forked child (threads do not survive fork) or when the pool size changed."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[:2] != (os.getpid(), size):
            if _executor is not None and _executor[0] == os.getpid():
                _executor[2].shutdown(wait=False)  # idle: the calls that used it have returned
            _executor = (os.getpid(), size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="math-worker"))
        return _executor[2]

