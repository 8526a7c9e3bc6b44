"""The HTTP client behind r1lab_client (see the package docstring for the delivery rules)."""

from __future__ import annotations

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
    """5xx or no connection: worth retrying."""


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
        raise _Transient(f"HTTP {exc.code}: {body[:200]}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        raise _Transient(str(exc)) from None


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class Run:
    """One run's reporting channel: `POST {run_url}/log` and `POST {run_url}/finish`."""

    def __init__(self, run_url: str, token: str, *, spool_dir: str | os.PathLike | None = None,
                 max_items: int = 1000, max_retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 10.0):
        self.run_url = run_url.rstrip("/")
        self.token = token
        self.spool_dir = Path(spool_dir) if spool_dir else Path(tempfile.gettempdir()) / "r1lab_spool" / \
            self.run_url.replace("://", "_").replace("/", "_").replace(":", "_")
        self.max_items, self.max_retries, self.backoff_s, self.timeout_s = max_items, max_retries, backoff_s, timeout_s
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
        batch = None
        if self._metrics or self._samples:
            batch = {"metrics": self._metrics, "samples": self._samples}
            self._metrics, self._samples = [], []
        if not self.replay():
            if batch:
                self._spool(batch)
            return False
        if batch is None:
            return True
        if self._deliver(batch):
            return True
        self._spool(batch)
        return False

    def _deliver(self, batch: dict) -> bool:
        """POST one batch with retries. True when accepted or rejected for good (4xx)."""
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            try:
                _post(self.run_url + "/log", self.token, batch, self.timeout_s)
                self.sent_batches += 1
                return True
            except ApiError as exc:
                self._reject(batch, exc)
                return True
            except _Transient as exc:
                if attempt == self.max_retries:
                    print(f"r1lab_client: {self.run_url}/log unreachable ({exc}); spooling to {self.spool_path}",
                          file=sys.stderr)
                    return False
                time.sleep(delay)
                delay *= 2
        return False

    def _reject(self, batch: dict, exc: ApiError) -> None:
        print(f"r1lab_client: batch rejected by the server ({exc}); kept in {self.rejected_path}", file=sys.stderr)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.rejected_path, "a") as f:
            f.write(json.dumps({"status": exc.status, "error": exc.body, "batch": batch}) + "\n")

    def _spool(self, batch: dict) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.spool_path, "a") as f:
            f.write(json.dumps(batch) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def pending(self) -> int:
        """Batches waiting in the spool."""
        if not self.spool_path.exists():
            return 0
        return sum(1 for line in self.spool_path.read_text().splitlines() if line.strip())

    def replay(self) -> bool:
        """Send spooled batches in order; stop at the first that still cannot go. True when empty."""
        if not self.spool_path.exists():
            return True
        lines = [line for line in self.spool_path.read_text().splitlines() if line.strip()]
        for i, line in enumerate(lines):
            if not self._deliver(json.loads(line)):
                tmp = self.spool_path.with_suffix(".tmp")
                tmp.write_text("".join(x + "\n" for x in lines[i:]))
                tmp.replace(self.spool_path)
                return False
        self.spool_path.unlink()
        return True

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
                    print(f"r1lab_client: could not send finish ({exc}); {self.pending()} batches left in "
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
