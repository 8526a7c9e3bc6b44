"""Accuracy reward: 1.0 when the completion's final answer equals the gold mathematically.

The verdict is math-verify's (`parse` + `verify`, strict mode) on two prepared strings; three
layers in front of it make it cheap enough for a GRPO loop, and one behind it makes it safe:

1. preparation: the answer is `extract_answer` (last `<answer>` span, else last `\\boxed{}`). A
   string with no math delimiter is wrapped as `$…$` before parsing, because math-verify only
   reads LaTeX inside delimiters (bare `\\sqrt{2}` parses to nothing, bare `1+x` to `1`); purely
   numeric strings (`1 000`, `1,5`) stay bare so that its number-format rules still apply.
   The same goes for the gold. (Plain math-verify on the raw strings is the benchmark's second
   baseline; see benchmarks/rewards.py for where the two differ.)
2. a fast path for the common case, plain numbers (integers, decimals, `a/b`, `\\frac{a}{b}`,
   optionally `x = …`, `$…$` or `\\boxed{}`-wrapped): exact rational comparison, with
   math-verify's 6-decimal rounding rule for decimals (numbers less than 2e-6 apart, `22/7` vs
   `3.142857`, get that rule from sympy itself in this process); anything it is not sure of goes on.
   Identical prepared strings are equal without parsing.
3. a bounded LRU cache of verdicts keyed by (gold, answer): the G completions of a prompt
   repeat answers, and so do epochs.
4. the sympy path runs in a small pool of persistent child processes (`_math_worker.py`), each
   request with a deadline. math-verify's own timeout uses SIGALRM, which only works in the main
   thread; a Celery worker thread, a web request thread or a trainer's reward thread is not. A
   child process can be killed when sympy hangs, which a thread cannot; the caller gets 0.0 for
   that pair (cached: the same pathological answer does not hang every group member) and the
   pool starts a fresh worker. Workers are started with `subprocess` (fork+exec of a fresh
   interpreter), never `multiprocessing` fork, so a parent holding CUDA or torch threads is safe,
   and daemonic Celery pool processes can use it too.
   Almost all of this path's time is math-verify's own work on distinct strings: parsing LaTeX
   (latex2sympy's ANTLR parser) and sympy's comparison; pipes and preparation are noise. So a
   worker parses each string once (its own cache), parses SLL-first (same trees, ~3x cheaper;
   see `_math_worker.py`) and keeps the start states of LL predictions, warms its parser while
   idle, skips `simplify` on differences it shows nonzero (false verdicts' main cost) and `solve`
   on two proportional polynomial equations (same verdicts, see there); and the distinct pairs
   of a call are handed out by gold (`_GoldQueue`): the G answers of a prompt go to the worker
   that parses that prompt's gold, preferably one that parsed it in an earlier step.

Departures from math-verify's defaults: answers longer than `MAX_ANSWER_CHARS` (100k characters)
score 0.0 without parsing, which bounds what a worker is sent.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

from training_backend.rewards.parsing import as_text, extract_answer

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0  # per (gold, answer) pair on the sympy path
MAX_ANSWER_CHARS = 100_000  # math-verify only regex-scans long text, so this is generous
CACHE_SIZE = 65_536  # verdicts; a key is two short strings, so this is a few MB at most
_WORKER_STARTUP_S = 60.0  # importing sympy + math-verify takes ~1-2 s; generous for a loaded host
_WORKER_PATH = Path(__file__).with_name("_math_worker.py")
_GOLDS_REMEMBERED = 4096  # per worker, see _MathWorker.golds

# --- 1. preparation -------------------------------------------------------------------------

# An unescaped `$`, `\(`, `\[`, `\boxed`, or an environment: math-verify finds LaTeX by these.
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox|\\begin\{")
_NUMERIC_ONLY = re.compile(r"[+-]?[\d\s.,]*\d[\d\s.,]*%?")


def prepare(text: str) -> str:
    """The string handed to math-verify's `parse` (see point 1 of the module docstring)."""
    text = text.strip()
    if not text or _DELIMITED.search(text) or _NUMERIC_ONLY.fullmatch(text):
        return text
    return f"${text}$"


# --- 2. fast path -----------------------------------------------------------------------------

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# `x = 3`: math-verify unwraps an assignment to its right-hand side when only one side has one.
# e and i are not variables to latex2sympy (Euler's number, the imaginary unit): left to sympy.
_VAR_PREFIX = re.compile(r"([a-dA-Df-hF-Hj-zJ-Z])\s*=\s*(.+)", re.DOTALL)
_INT = re.compile(r"-?\d{1,300}")
_DECIMAL = re.compile(r"-?\d{0,300}\.\d{1,300}")
_SLASH_FRACTION = re.compile(r"(-?\d{1,300})\s*/\s*(\d{1,300})")
_TEX_FRACTION = re.compile(r"(-?)\\[dt]?frac\{\s*(-?\d{1,300})\s*\}\{\s*(\d{1,300})\s*\}")
# Two numbers that round to the same 6 decimals (math-verify's float rule) differ by < 1e-6;
# further apart than this they surely differ, closer they go to sympy for the exact rule.
_FLOAT_CLEARLY_DIFFERENT = Fraction(2, 10**6)
_FLOAT_DIGITS = 15  # math-verify parses decimals as 15-digit sympy Floats
_HAS_ALNUM = re.compile(r"[0-9A-Za-z]")
# Every character the four number patterns below can match (digits, sign, point, slash,
# whitespace, `\\frac`/`\\dfrac`/`\\tfrac` and braces).
_PLAIN_NUMBER_CHARS = re.compile(r"[-\d./\s\\dtfrac{}]*")


def _unwrap(text: str) -> str:
    """Strip whole-string `$…$`, `\\(…\\)`, `\\[…\\]`, `\\boxed{…}` wrappers and a final period."""
    while True:
        text = text.strip()
        before = text
        for left, right in _WRAPPERS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
                break
        if text.startswith("\\boxed{") and text.endswith("}") and _box_closes_at_end(text):
            text = text[len("\\boxed{") : -1]
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1]
        if text == before:
            return text


def _box_closes_at_end(text: str) -> bool:
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def _as_number(text: str) -> tuple[str | None, Fraction, bool, int] | None:
    """(variable or None, value, is_decimal, digit count) for a plain number; None otherwise."""
    text = _unwrap(text)
    var = None
    m = _VAR_PREFIX.fullmatch(text)
    if m:
        var, text = m.group(1), _unwrap(m.group(2))
    if not _PLAIN_NUMBER_CHARS.fullmatch(text):
        return None  # a cheap test first: prose would otherwise be scanned digit by digit below
    digits = sum(c.isdigit() for c in text)
    if _INT.fullmatch(text):
        return var, Fraction(int(text)), False, digits
    if _DECIMAL.fullmatch(text):
        return var, Fraction(text), True, digits
    m = _SLASH_FRACTION.fullmatch(text)
    if m and int(m.group(2)) != 0:
        return var, Fraction(int(m.group(1)), int(m.group(2))), False, digits
    m = _TEX_FRACTION.fullmatch(text)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return var, -value if m.group(1) else value, False, digits
    return None


def fast_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict when it is certain without sympy; None when sympy must decide."""
    if gold == answer and _HAS_ALNUM.search(gold):
        return True
    g = _as_number(gold)
    if g is None:
        return None
    a = _as_number(answer)
    if a is None:
        return None
    g_var, g_val, g_dec, g_digits = g
    a_var, a_val, a_dec, a_digits = a
    if g_var and a_var and g_var != a_var:
        return None  # `x = 3` vs `y = 3`: strict relational comparison, sympy's call
    if not (g_dec or a_dec):
        return g_val == a_val  # exact rationals on both sides: sympy compares exactly too
    if max(g_digits, a_digits) > _FLOAT_DIGITS:
        return None  # beyond a Float's precision sympy's rounding decides
    if g_val == a_val:
        return True
    if abs(g_val - a_val) > _FLOAT_CLEARLY_DIFFERENT:
        return False
    return None


def _close_numbers(gold: str, answer: str) -> tuple[Fraction, bool, Fraction, bool] | None:
    """(gold value, is decimal, answer value, is decimal) for what `close_numbers_verdict` decides."""
    g_num, a_num = _as_number(gold), _as_number(answer)
    if g_num is None or a_num is None:
        return None
    (g_var, g_val, g_dec, g_digits), (a_var, a_val, a_dec, a_digits) = g_num, a_num
    if g_var or a_var:
        return None  # an assignment on one side or both: math-verify compares relations there
    if not (g_dec or a_dec) or max(g_digits, a_digits) > _FLOAT_DIGITS or g_val == a_val:
        return None
    if abs(g_val - a_val) > _FLOAT_CLEARLY_DIFFERENT:
        return None
    return g_val, g_dec, a_val, a_dec


def close_numbers_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict on two different plain numbers less than 2e-6 apart, at least one
    a decimal of at most 15 digits (what `fast_verdict` leaves to sympy); None for anything else.
    sympy's own objects and rule, without parsing or a worker; called once per distinct pair
    (after the verdict cache), as it imports sympy and costs ~1 ms.

    math-verify parses a decimal to `Float(text)` (15 digits), `\\frac{a}{b}` to `Rational`, `a/b`
    to an unevaluated product it evaluates before comparing numbers, an integer to `Integer`.
    `verify` then says equal when the two are ==, or round to the same 6 decimals (its float
    rule), or their difference is zero; its string comparison of the two extractions cannot
    match, as they spell different values. Tested against math-verify itself on every form of
    close pairs (tests/training_backend/test_rewards_accuracy.py). sympy's arithmetic on two
    short numbers is bounded, so this runs in the caller's process (in `_verdicts`, while the
    workers parse the rest); sympy is imported on the first close pair only.
    """
    close = _close_numbers(gold, answer)
    if close is None:
        return None
    g_val, g_dec, a_val, a_dec = close

    from sympy import Float, Integer, Rational

    def number(value: Fraction, is_decimal: bool):
        if is_decimal:  # a decimal's value is exact in base 10: print it back as the text parsed
            return Float(_decimal_text(value), 15)
        if value.denominator == 1:
            return Integer(value.numerator)
        return Rational(value.numerator, value.denominator)

    g, a = number(g_val, g_dec), number(a_val, a_dec)
    if g == a:
        return True
    try:
        if g.round(6) == a.round(6):
            return True
    except (TypeError, ValueError, ArithmeticError):
        pass
    return bool((g - a).is_zero)


def _decimal_text(value: Fraction) -> str:
    """The exact decimal expansion of a Fraction whose denominator divides a power of ten."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    digits = str((value * 10**places).numerator).rjust(places + 1, "0")
    return f"{sign}{digits[: len(digits) - places]}.{digits[len(digits) - places :] or '0'}"


# --- 3. cache ---------------------------------------------------------------------------------


class _VerdictCache:
    """A thread-safe LRU of (gold, answer) -> verdict."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._data: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bool | None:
        with self._lock:
            verdict = self._data.get(key)
            if verdict is not None:
                self._data.move_to_end(key)
            return verdict

    def put(self, key: tuple[str, str], verdict: bool) -> None:
        with self._lock:
            self._data[key] = verdict
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_cache = _VerdictCache(CACHE_SIZE)


# --- 4. the bounded sympy path ------------------------------------------------------------------


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


def clear_caches() -> None:
    """Forget every verdict and every parse, keeping the started workers (benchmarks; tests)."""
    _cache.clear()
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


def _sympy_verdicts(
    pairs: Sequence[tuple[str, str]],
    timeout_s: float,
    meanwhile: Callable[[], dict[tuple[str, str], bool]] = dict,
) -> dict[tuple[str, str], bool]:
    """math-verify's verdict on each distinct prepared pair, on up to `_pool.size` workers;
    `meanwhile` (the caller's own share, see `_verdicts`) runs in this thread as they work."""
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


# --- the reward -------------------------------------------------------------------------------


def _key(gold: object, answer: str | None) -> tuple[str, str] | None:
    """The prepared (gold, answer) pair, or None when the answer scores 0 without looking."""
    if answer is None or len(answer) > MAX_ANSWER_CHARS:
        return None
    return prepare(as_text(gold)), prepare(answer)


def _verdicts(keys: Sequence[tuple[str, str] | None], timeout_s: float) -> list[bool]:
    """Verdicts for prepared pairs: fast path, cache, then the sympy pool in parallel."""
    verdicts: list[bool | None] = []
    pending: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        verdict = None if key is None else fast_verdict(*key)
        if key is None:
            verdict = False
        elif verdict is None:
            verdict = _cache.get(key)
        if verdict is None:
            pending.setdefault(key, []).append(i)
        verdicts.append(verdict)
    if pending:
        # Close plain numbers are this thread's own share (sympy, ~1 ms a pair), done while the
        # workers parse the rest: no pipe, no parse, and on an otherwise idle thread.
        close = [key for key in pending if _close_numbers(*key) is not None]
        rest = [key for key in pending if _close_numbers(*key) is None]
        own = lambda: {key: bool(close_numbers_verdict(*key)) for key in close}  # noqa: E731
        for key, verdict in _sympy_verdicts(rest, timeout_s, meanwhile=own).items():
            _cache.put(key, verdict)  # timeouts too: a hanging answer must not hang each epoch
            for i in pending[key]:
                verdicts[i] = verdict
    return [bool(v) for v in verdicts]


def accuracy_reward(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 when the completion's final answer is mathematically equivalent to `gold`, else 0.0."""
    return float(_verdicts([_key(gold, extract_answer(completion))], timeout_s)[0])


def answers_equivalent(gold: str, answer: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Is a bare `answer` string equivalent to `gold`? (cons@k voting, curation checks)."""
    return _verdicts([_key(gold, as_text(answer))], timeout_s)[0]


def accuracy_rewards(
    completions: Sequence[object],
    *,
    gold: Sequence[object] | None = None,
    answer: Sequence[object] | None = None,
    solution: Sequence[object] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **_columns: object,
) -> list[float | None]:
    """Batch form. Reads the gold from the first column present of `gold`, `answer`, `solution`
    (TRL datasets use all three names); None for rows whose gold is None."""
    golds = next((col for col in (gold, answer, solution) if col is not None), None)
    if golds is None:
        return [None] * len(completions)
    keys = [None if g is None else _key(g, extract_answer(c)) for c, g in zip(completions, golds, strict=True)]
    verdicts = _verdicts(keys, timeout_s)
    return [None if g is None else float(v) for g, v in zip(golds, verdicts)]
