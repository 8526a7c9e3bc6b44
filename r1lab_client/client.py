"""The HTTP client behind r1lab_client (see the package docstring for the delivery rules)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
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


def _post(url: str, token: str, payload: dict, timeout: float) -> dict:
    data = json.dumps(payload, allow_nan=False, default=str).encode()
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


class Run:
    """One run's reporting channel: `POST {run_url}/log`, `/rewind` and `/finish`."""

    def __init__(self, run_url: str, token: str, *, spool_dir: str | os.PathLike | None = None,
                 max_items: int = 1000, max_retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 10.0,
                 max_error_tries: int = 10):
        self.run_url = run_url.rstrip("/")
        self.token = token
        # One spool per run token: a resumed attempt gets a fresh token, and what an earlier
        # attempt left spooled must never be replayed under the new attempt's name.
        self.spool_dir = Path(spool_dir) if spool_dir else Path(tempfile.gettempdir()) / "r1lab_spool" / (
            self.run_url.replace("://", "_").replace("/", "_").replace(":", "_") + "-" +
            hashlib.sha256(token.encode()).hexdigest()[:12])
        self.max_items, self.max_retries, self.backoff_s, self.timeout_s = max_items, max_retries, backoff_s, timeout_s
        self.max_error_tries = max_error_tries
        self._metrics: list[dict] = []
        self._samples: list[dict] = []
        self._step: int | None = None
        self.sent_batches = 0
        self.finished: str | None = None

    @property
    def spool_path(self) -> Path:
        return self.spool_dir / "spool.jsonl"

    @property
    def rejected_path(self) -> Path:
        return self.spool_dir / "rejected.jsonl"

    # --- logging -------------------------------------------------------------------------------
    def log(self, metrics: dict, step: int) -> None:
        """Queue metrics for `step` (non-finite values are dropped: JSON has no NaN)."""
        self._new_step(step)
        ts = time.time()
        for k, v in metrics.items():
            f = _finite(v)
            if f is not None:
                self._metrics.append({"step": int(step), "key": str(k), "value": f, "ts": ts})
        self._maybe_flush()

    def log_samples(self, samples: list[dict], step: int) -> None:
        """Queue rollouts for `step`; each has at least prompt, completion, rewards."""
        self._new_step(step)
        for s in samples:
            self._samples.append({**s, "step": int(step)})
        self._maybe_flush()

    def rewind(self, step: int) -> bool:
        """This attempt continues after `step` (-1: from the start). What earlier attempts logged
        after it stops being the run's curve (the server keeps it as history), so the values this
        attempt logs for those steps are stored. Call it before logging, when resuming. Delivered
        in order with the batches (spooled like them when the server is away). True when sent."""
        self.flush()
        return self._send_or_spool({"op": "rewind", "step": int(step)})

    def _new_step(self, step: int) -> None:
        if self._step is not None and step != self._step:
            self.flush()
        self._step = step

    def _maybe_flush(self) -> None:
        if len(self._metrics) + len(self._samples) >= self.max_items:
            self.flush()

    # --- delivery ------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Send what is queued (after replaying the spool). True when nothing is left pending."""
        if not (self._metrics or self._samples):
            return self.replay()
        batch = {"metrics": self._metrics, "samples": self._samples}
        self._metrics, self._samples = [], []
        return self._send_or_spool({"op": "log", "batch": batch})

    def _send_or_spool(self, entry: dict) -> bool:
        if not self.replay():
            self._spool(entry)
            return False
        result = self._deliver(entry)
        if result in ("ok", "rejected"):
            return True
        if result == "error" and entry["op"] == "log":
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
        else:
            url, payload = self.run_url + "/log", entry["batch"]
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
        record.update({"batch": entry["batch"]} if entry["op"] == "log" else {"rewind": entry["step"]})
        with open(self.rejected_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _spool(self, entry: dict) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.spool_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
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
        """Entries (batches, rewinds) waiting in the spool."""
        return len(self._spooled())

    def replay(self) -> bool:
        """Send spooled entries in order. True when the spool is empty afterwards.

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
            if result == "error" and entry["op"] == "log":
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
