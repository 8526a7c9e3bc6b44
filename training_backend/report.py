"""Reporters: where a stage's numbers go. The trainer only ever calls these five methods:

    rewind(step)                                 log_metrics(step, {"reward": 0.5, ...})
    log_samples(step, [{"prompt": ..., ...}])    flush()
    finish("succeeded" | "failed" | "cancelled")

`rewind(step)` comes first: the attempt continues after `step` (-1: from the start), so what an
earlier, crashed attempt logged after it stops being the run's curve (the dashboard keeps it as
history) and this attempt's values are stored instead of being dropped as retries.

- `JsonlReporter(path)`: one JSON object per line, `{"step", "key", "value"}` for a metric and
  `{"step", "sample": {...}}` for a sample (what `run` writes without --report-url).
- `MemoryReporter()`: keeps everything in lists, for tests.
- `HttpReporter(run_url, token)`: the dashboard's ingest API (docs/api.md, "Reporter payload"),
  through r1lab_client: batched per step, retried with backoff on 5xx and connection errors,
  spooled to disk and replayed in order when the server is down, 4xx batches written to a
  rejected file instead of being dropped silently.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Protocol


class Reporter(Protocol):
    def rewind(self, step: int) -> None: ...
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_samples(self, step: int, samples: list[dict]) -> None: ...
    def flush(self) -> None: ...
    def finish(self, status: str) -> None: ...


def _clean(value):
    """NaN/inf are not JSON: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlReporter:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", buffering=1 << 16)

    def rewind(self, step: int) -> None:
        self._f.write(json.dumps({"rewind": step}) + "\n")

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self._f.write(json.dumps({"step": step, "key": k, "value": _clean(float(v))}) + "\n")

    def log_samples(self, step: int, samples: list[dict]) -> None:
        for s in samples:
            self._f.write(json.dumps({"step": step, "sample": s}, default=str) + "\n")

    def flush(self) -> None:
        self._f.flush()

    def finish(self, status: str) -> None:
        self._f.write(json.dumps({"finish": status, "ts": time.time()}) + "\n")
        self._f.close()


class MemoryReporter:
    def __init__(self):
        self.metrics: list[tuple[int, str, float]] = []
        self.samples: list[tuple[int, dict]] = []
        self.status: str | None = None
        self.flushes = 0
        self.rewinds: list[int] = []

    def rewind(self, step: int) -> None:
        self.rewinds.append(step)
        self.metrics = [m for m in self.metrics if m[0] <= step]
        self.samples = [s for s in self.samples if s[0] <= step]

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.extend((step, k, float(v)) for k, v in metrics.items())

    def log_samples(self, step: int, samples: list[dict]) -> None:
        self.samples.extend((step, dict(s)) for s in samples)

    def flush(self) -> None:
        self.flushes += 1

    def finish(self, status: str) -> None:
        self.status = status

    def series(self, key: str) -> list[float]:
        return [v for _, k, v in self.metrics if k == key]


class HttpReporter:
    """Reports to `run_url` (e.g. http://host:8000/api/v1/runs/42) with the run's token."""

    def __init__(self, run_url: str, token: str, *, spool_dir: str | os.PathLike | None = None, **client_kw):
        from r1lab_client import Run

        self.run = Run(run_url, token, spool_dir=spool_dir, **client_kw)

    def rewind(self, step: int) -> None:
        self.run.rewind(step)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log({k: _clean(float(v)) for k, v in metrics.items()}, step=step)

    def log_samples(self, step: int, samples: list[dict]) -> None:
        self.run.log_samples(samples, step=step)

    def flush(self) -> None:
        self.run.flush()

    def finish(self, status: str) -> None:
        self.run.finish(status)
