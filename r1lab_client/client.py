"""The HTTP client behind r1lab_client (see the package docstring for the delivery rules)."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import select
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from pathlib import Path


class ApiError(Exception):
    """The server refused a request (4xx); `status` and `body` say why."""

    def __init__(self, status: int, body: str):
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body[:500]}")


class _Transient(Exception):
    """5xx or no connection: worth retrying. `status` is None when no answer came back."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


# Answers that say the server (or a proxy before it) is down or busy, not that this batch is bad.
_DOWN_STATUSES = {408, 429, 502, 503, 504}


def _post(url: str, token: str, payload: dict | bytes, timeout: float) -> dict:
    data = payload if isinstance(payload, bytes) else json.dumps(payload, allow_nan=False, default=str).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read().decode() or "{}"
            return json.loads(body)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise ApiError(exc.code, body) from None
        raise _Transient(f"HTTP {exc.code}: {body[:200]}", exc.code) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        raise _Transient(str(exc)) from None


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _json_default(o):
    """numpy/torch scalars and arrays become numbers and lists; anything else its str()."""
    for name in ("item", "tolist"):
        fn = getattr(o, name, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError):
                continue
    return str(o)


def _no_nan(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_nan(x) for x in v]
    return v


def _sample_json(sample: dict) -> str:
    """One sample as JSON. JSON has no NaN: a non-finite number in a sample is sent as null (a
    reward that does not apply, no advantage) instead of failing the whole batch."""
    try:
        return json.dumps(sample, allow_nan=False, default=_json_default)
    except ValueError:
        return json.dumps(_no_nan(json.loads(json.dumps(sample, default=_json_default))), allow_nan=False)


def _fragment(item) -> str:
    return item if type(item) is str else json.dumps(item, allow_nan=False, default=_json_default)


def _line(record: dict, body: str | None) -> str:
    """`record` as one JSON line, with `body` (a log batch already encoded) as its "batch"."""
    if body is None:
        return json.dumps(record) + "\n"
    rest = json.dumps({k: v for k, v in record.items() if k != "batch"})
    return '{"batch":' + body + ("," + rest[1:] if rest != "{}" else "}") + "\n"


def _answered(conn: http.client.HTTPConnection) -> bool:
    """Has the server answered on `conn` (or closed it)? Never blocks."""
    sock = conn.sock
    if sock is None:
        return True
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
    if pending is not None and pending():
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class Run:
    """One run's reporting channel: `POST {run_url}/log`, `/rewind` and `/finish`.

    Batching (see the package docstring): `max_items` points/samples or `max_bytes` of JSON make
    a full batch; a step's batch is sent when the next step starts if a connection is free,
    otherwise it grows until one is (at most `max_in_flight` requests wait for an answer); what
    has been queued for `linger_s` without a send goes out anyway. `max_in_flight=0` sends every
    batch synchronously."""

    def __init__(self, run_url: str, token: str, *, spool_dir: str | os.PathLike | None = None,
                 max_items: int = 10_000, max_bytes: int = 4 * 1024 * 1024, max_in_flight: int = 2,
                 linger_s: float | None = 1.0, max_retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 10.0,
                 max_error_tries: int = 10):
        self.run_url = run_url.rstrip("/")
        self.token = token
        # One spool per run token: a resumed attempt gets a fresh token, and what an earlier
        # attempt left spooled must never be replayed under the new attempt's name.
        self.spool_dir = Path(spool_dir) if spool_dir else Path(tempfile.gettempdir()) / "r1lab_spool" / (
            self.run_url.replace("://", "_").replace("/", "_").replace(":", "_") + "-" +
            hashlib.sha256(token.encode()).hexdigest()[:12])
        self.max_items, self.max_bytes = max_items, max_bytes
        self.max_retries, self.backoff_s, self.timeout_s = max_retries, backoff_s, timeout_s
        self.max_error_tries = max_error_tries
        self.linger_s = linger_s
        url = urllib.parse.urlsplit(self.run_url)
        # A proxy in the environment is honoured by urllib (the synchronous path) only.
        proxied = url.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(url.hostname or "")
        self.max_in_flight = 0 if proxied else max_in_flight
        self._url = url
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        # The open batch: JSON texts, one per point and one per sample (a dict works too).
        self._metrics: list = []
        self._samples: list = []
        self._bytes = 0
        self._step: int | None = None
        self._keys: dict = {}  # metric key -> its JSON text
        self._last_add = 0.0
        self._in_flight: deque = deque()  # (entry, connection) sent, answer not read yet; in send order
        self._idle: list = []  # keep-alive connections
        self._lock = threading.RLock()
        self._linger: threading.Thread | None = None
        self.sent_batches = 0
        self.finished: str | None = None

    @property
    def spool_path(self) -> Path:
        return self.spool_dir / "spool.jsonl"

    @property
    def rejected_path(self) -> Path:
        return self.spool_dir / "rejected.jsonl"

    # --- logging -------------------------------------------------------------------------------
    def log(self, metrics: dict, step: int, *, ts: float | None = None) -> None:
        """Queue metrics for `step` (non-finite values are dropped: JSON has no NaN). `ts`: their
        wall time (seconds since the epoch), default now."""
        step = int(step)
        ts = time.time() if ts is None or not math.isfinite(ts) else float(ts)
        with self._lock:
            self._new_step(step)
            # Encoded here, one text per point, step and wall time once per call: json.dumps of
            # the whole batch cost ~6 us a point, as much as the server's work (issue 14).
            head = f'{{"step":{step},"ts":{ts!r},"key":'
            keys = self._keys
            out = self._metrics
            room_items = self.max_items - len(out) - len(self._samples)
            room_bytes = self.max_bytes - self._bytes
            for k, v in metrics.items():
                if type(v) is not float:
                    v = _finite(v)
                    if v is None:
                        continue
                elif v - v != 0.0:  # NaN or ±inf
                    continue
                kj = keys.get(k)
                if kj is None:
                    if len(keys) > 100_000:
                        keys.clear()
                    kj = keys[k] = json.dumps(str(k))
                text = f'{head}{kj},"value":{v!r}}}'
                room_bytes -= len(text) + 1
                room_items -= 1
                if (room_items < 0 or room_bytes < 0) and (out or self._samples):
                    self._bytes = self.max_bytes - room_bytes - len(text) - 1
                    self._ship(block=True)
                    out = self._metrics
                    room_items = self.max_items - len(out) - len(self._samples) - 1
                    room_bytes = self.max_bytes - self._bytes - len(text) - 1
                out.append(text)
            self._bytes = self.max_bytes - room_bytes
            self._added()

    def log_samples(self, samples: list[dict], step: int) -> None:
        """Queue rollouts for `step`; each has at least prompt, completion, rewards."""
        step = int(step)
        with self._lock:
            self._new_step(step)
            for s in samples:
                text = _sample_json({**s, "step": step})
                if len(self._metrics) + len(self._samples) >= self.max_items or self._bytes + len(text) > self.max_bytes:
                    self._ship(block=True)
                self._samples.append(text)
                self._bytes += len(text) + 1
            self._added()

    def rewind(self, step: int) -> bool:
        """This attempt continues after `step` (-1: from the start). What earlier attempts logged
        after it stops being the run's curve (the server keeps it as history), so the values this
        attempt logs for those steps are stored. Call it before logging, when resuming. Delivered
        in order with the batches (spooled like them when the server is away). True when sent."""
        with self._lock:
            self.flush()
            return self._send_or_spool({"op": "rewind", "step": int(step)})

    def update_config(self, config: dict) -> bool:
        """Set keys of the run's config on the server (`POST {run_url}/config`: top-level keys
        replaced, the others kept). Spooled like a batch when the server is away. True when sent."""
        with self._lock:
            cleaned = json.loads(_sample_json(dict(config)))
            return self._send_or_spool({"op": "config", "config": cleaned})

    def _new_step(self, step: int) -> None:
        """A step ends when the next one starts: its batch goes out now if a connection is free.
        If both are waiting on the server, the batch keeps growing and goes with the next free
        one: a trainer logging a step a second sends each step at its end, a fast one (a
        replayed log, a benchmark) sends few large batches."""
        if self._step is not None and step != self._step and (self._metrics or self._samples):
            self._ship(block=False)
        self._step = step

    def _end_step(self) -> None:
        """The caller says its step is complete (W&B's commit): out now if a connection is free."""
        with self._lock:
            if self._metrics or self._samples:
                self._ship(block=False)

    def _added(self) -> None:
        self._last_add = time.monotonic()
        if (self._metrics or self._samples) and self.linger_s and self._linger is None:
            self._linger = threading.Thread(target=self._linger_loop, name="r1lab-client-linger", daemon=True)
            self._linger.start()

    def _linger_loop(self) -> None:
        """Sends what has waited `linger_s` (a burst of steps, then a long evaluation) and reads
        answers, so that nothing waits for the trainer's next call. Exits when nothing is left."""
        while True:
            time.sleep(self.linger_s)
            with self._lock:
                if (self._metrics or self._samples) and time.monotonic() - self._last_add >= self.linger_s:
                    self._ship(block=True)
                self._reap(block=False)
                if self.finished is not None or not (self._metrics or self._samples or self._in_flight):
                    self._linger = None
                    return

    def _take(self) -> dict:
        parts = []
        for items in (self._metrics, self._samples):
            try:
                parts.append(",".join(items))
            except TypeError:  # a dict put there by hand
                parts.append(",".join(map(_fragment, items)))
        body = '{"metrics":[' + parts[0] + '],"samples":[' + parts[1] + "]}"
        self._metrics, self._samples, self._bytes = [], [], 0
        return {"op": "log", "body": body}

    def _ship(self, *, block: bool) -> None:
        """Send the open batch without waiting for the answer, on a free connection (`block`:
        wait for one; else leave the batch open when all are busy). Behind a spool, or with
        `max_in_flight=0`, it is sent synchronously, in order."""
        self._reap(block=False)
        if not (self._metrics or self._samples):
            return
        while len(self._in_flight) >= self.max_in_flight > 0:
            if not block:
                return
            self._reap_one()
        if self.max_in_flight <= 0 or self.spool_path.exists():
            self._drain()
            self._send_or_spool(self._take())
            return
        self._send_async(self._take())

    # --- delivery ------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Send what is queued (after replaying the spool) and wait for every answer. True when
        nothing is left pending."""
        with self._lock:
            self._drain()
            if not (self._metrics or self._samples):
                return self._replay()
            return self._send_or_spool(self._take())

    # Sent without waiting: the trainer builds the next batch while the server stores this one.
    def _conn(self) -> http.client.HTTPConnection:
        if self._idle:
            return self._idle.pop()
        cls = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
        return cls(self._url.hostname, self._url.port, timeout=self.timeout_s)

    def _send_async(self, entry: dict) -> None:
        conn = self._conn()
        try:
            conn.request("POST", self._url.path + "/log", body=entry["body"].encode(), headers=self._headers)
        except (OSError, http.client.HTTPException):
            conn.close()
            self._fallback(entry)
            return
        self._in_flight.append((entry, conn))

    def _reap(self, *, block: bool) -> None:
        """Read the answers that have arrived (all of them with `block`), oldest first."""
        while self._in_flight and (block or _answered(self._in_flight[0][1])):
            self._reap_one()

    def _drain(self) -> None:
        self._reap(block=True)

    def _reap_one(self) -> None:
        entry, conn = self._in_flight.popleft()
        try:
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # no answer (or a keep-alive connection the server had closed)
            self._fallback(entry)
            return
        self._idle.append(conn)
        if resp.status < 300:
            self.sent_batches += 1
        elif 400 <= resp.status < 500 and resp.status not in (408, 429):
            self._set_aside(entry, resp.status, body.decode(errors="replace"), "rejected by the server")
        else:
            self._fallback(entry)

    def _fallback(self, entry: dict) -> None:
        """A batch sent without waiting did not make it: the synchronous path takes over (the
        usual retries, then the spool), after the batches sent before it, so the spool keeps
        the order. A batch sent after it may have been stored first; ingest is idempotent."""
        self._drain()
        self._send_or_spool(entry)

    def _send_or_spool(self, entry: dict) -> bool:
        if not self._replay():
            self._spool(entry)
            return False
        result = self._deliver(entry)
        if result in ("ok", "rejected"):
            return True
        if result == "error" and entry["op"] != "rewind":
            entry["tries"] = 1
        self._spool(entry)
        return False

    def _deliver(self, entry: dict) -> str:
        """POST one entry with retries: "ok"; "rejected" (4xx: kept in the rejected file); "down"
        (no answer, or 408/429/502/503/504 after every retry); "error" (another 5xx after every
        retry: the server is up but fails on this request)."""
        delay = self.backoff_s
        if entry["op"] == "rewind":
            url, payload = self.run_url + "/rewind", {"step": entry["step"]}
        elif entry["op"] == "config":
            url, payload = self.run_url + "/config", {"config": entry["config"]}
        else:
            url = self.run_url + "/log"
            payload = entry["body"].encode() if "body" in entry else entry["batch"]
        for attempt in range(self.max_retries + 1):
            try:
                _post(url, self.token, payload, self.timeout_s)
                self.sent_batches += entry["op"] == "log"
                return "ok"
            except ApiError as exc:
                self._set_aside(entry, exc.status, exc.body, "rejected by the server")
                return "rejected"
            except _Transient as exc:
                if attempt == self.max_retries:
                    down = exc.status is None or exc.status in _DOWN_STATUSES
                    print(f"r1lab_client: {url} {'unreachable' if down else 'failed'} ({exc}); "
                          f"spooling to {self.spool_path}", file=sys.stderr)
                    entry["last_error"] = str(exc)[:500]
                    entry["last_status"] = exc.status
                    return "down" if down else "error"
                time.sleep(delay)
                delay *= 2
        return "down"

    def _set_aside(self, entry: dict, status: int | None, error: str, why: str) -> None:
        print(f"r1lab_client: {entry['op']} {why} (HTTP {status}: {error[:300]}); kept in {self.rejected_path}",
              file=sys.stderr)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        record = {"status": status, "error": error, "why": why}
        if entry["op"] == "log":
            record["batch"] = entry.get("batch")
        elif entry["op"] == "config":
            record["config"] = entry["config"]
        else:
            record["rewind"] = entry["step"]
        with open(self.rejected_path, "a") as f:
            f.write(_line(record, entry.get("body")))

    def _spool(self, entry: dict) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        rest = {k: v for k, v in entry.items() if k != "body"}
        if "body" in entry:
            rest["batch"] = None
        with open(self.spool_path, "a") as f:
            f.write(_line(rest, entry.get("body")))
            f.flush()
            os.fsync(f.fileno())

    def _spooled(self) -> list[dict]:
        if not self.spool_path.exists():
            return []
        entries = []
        for line in self.spool_path.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                entries.append(e if "op" in e else {"op": "log", "batch": e})  # a batch spooled by 0.1
        return entries

    def pending(self) -> int:
        """Entries (batches, rewinds) waiting in the spool, once the answers to what was sent
        have been read."""
        with self._lock:
            self._drain()
            return len(self._spooled())

    def replay(self) -> bool:
        """Send spooled entries in order. True when the spool is empty afterwards."""
        with self._lock:
            return self._replay()

    def _replay(self) -> bool:
        """(`replay`, under the lock.)

        The run must never be stuck behind one batch: a log batch that the server keeps failing
        on with a 5xx (a bug there, or input it cannot store) while it accepts the batches after
        it is set aside into the rejected file; so is one that failed `max_error_tries` times.
        Anything that says the server is away (no answer, 502/503/504/429) stops the replay and
        keeps the order. A rewind is never skipped or passed: the batches after it depend on it.
        """
        entries = self._spooled()
        if not entries:
            return True
        left: list[dict] = []
        failing: list[dict] = []  # log batches that got a 5xx this pass, still in `left`
        stopped = False
        for entry in entries:
            if stopped:
                left.append(entry)
                continue
            result = self._deliver(entry)
            if result in ("ok", "rejected"):
                if result == "ok":  # the server is healthy: the ones it failed on are the problem
                    for bad in failing:
                        left.remove(bad)
                        self._set_aside(bad, bad.get("last_status"), bad.get("last_error", ""),
                                        "failed on the server while later batches went through")
                    failing = []
                continue
            left.append(entry)
            if result == "error" and entry["op"] != "rewind":
                entry["tries"] = entry.get("tries", 0) + 1
                if entry["tries"] >= self.max_error_tries:
                    left.remove(entry)
                    self._set_aside(entry, entry.get("last_status"), entry.get("last_error", ""),
                                    f"failed on the server {entry['tries']} times")
                else:
                    failing.append(entry)
                continue  # try the next one: it tells a bad batch from a sick server
            stopped = True
        if not left:
            self.spool_path.unlink(missing_ok=True)
            return True
        tmp = self.spool_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in left))
        tmp.replace(self.spool_path)
        return False

    def finish(self, status: str = "succeeded") -> bool:
        """Flush everything, then mark the run finished. True when the server has all of it."""
        with self._lock:
            try:
                return self._finish(status)
            finally:
                for conn in self._idle:
                    conn.close()
                self._idle = []

    def _finish(self, status: str) -> bool:
        delivered = self.flush()
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            try:
                _post(self.run_url + "/finish", self.token, {"status": status}, self.timeout_s)
                self.finished = status
                return delivered
            except ApiError as exc:
                print(f"r1lab_client: finish refused ({exc})", file=sys.stderr)
                return False
            except _Transient as exc:
                if attempt == self.max_retries:
                    print(f"r1lab_client: could not send finish ({exc}); {self.pending()} entries left in "
                          f"{self.spool_path}", file=sys.stderr)
                    return False
                time.sleep(delay)
                delay *= 2
        return False


def init(base_url: str, token: str, name: str, project: str = "", config: dict | None = None, **run_kw) -> Run:
    """Create a run with a personal API token (`POST {base_url}/api/v1/runs`) and return its channel."""
    base = base_url.rstrip("/")
    try:
        created = _post(base + "/api/v1/runs", token, {"name": name, "project": project, "config": config or {}},
                        run_kw.get("timeout_s", 10.0))
    except _Transient as exc:
        raise ConnectionError(f"cannot create a run at {base}: {exc}") from None
    return Run(f"{base}/api/v1/runs/{created['id']}", created["token"], **run_kw)
