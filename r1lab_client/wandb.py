"""A W&B-style API on r1lab: a script written for Weights & Biases logs to r1lab when its import
line changes (Hugging Face's trackio does the same):

    import r1lab_client.wandb as wandb          # was: import wandb

    run = wandb.init(project="r1-zero", name="grpo-0.5b", config={"lr": 1e-6, "num_generations": 8})
    wandb.config.update({"beta": 0.04})
    for step in range(steps):
        ...
        wandb.log({"reward": r, "kl": kl, "completions/mean_length": n}, step=step)
        wandb.log({"completions": wandb.Table(columns=["prompt", "completion", "accuracy", "advantage"], data=rows)})
    run.summary["best_accuracy"] = best
    wandb.finish()

The server and a personal API token come from `R1LAB_URL` and `R1LAB_TOKEN` (or `init(url=…,
token=…)`). `mode="disabled"` (or `WANDB_MODE=disabled`, `WANDB_DISABLED=true`, `R1LAB_MODE=disabled`)
makes every call a no-op; so does `mode="offline"` (r1lab has no offline store; a warning says so).

What is supported, and how it maps:

- `init(project=, name=, config=, notes=, tags=, group=, job_type=)` creates an r1lab run in that
  project (`tags`, `notes`, `group`, `job_type` are kept in its config under `wandb`). A second
  `init` finishes the first run. `init` returns the run; `wandb.run`, `wandb.config` and
  `wandb.summary` are the current run's. Usable as `with wandb.init(...) as run:` (an exception
  marks the run failed).
- `config`: attribute and item access, `update(dict | argparse.Namespace | dataclass)`,
  `setdefaults`; every change is sent (`POST /api/v1/runs/{id}/config`, keys merged).
- `log(dict, step=None, commit=None)`: numbers become points of their series (nested dicts are
  flattened with "/": {"train": {"loss": 1}} → "train/loss"). As in W&B, without `step` an
  internal counter is used and advanced on every committed call; `step=` moves it forward
  (a step lower than the current one is ignored with a warning, as W&B does); `commit=False`
  keeps adding to the same step. A committed step is sent at once when a connection is free.
- `Table(columns=, data=)` (or `dataframe=`, `add_data`) logged in `log` with a prompt and a
  completion column becomes rollout samples of that step: columns prompt/input/question,
  completion/response/output, reward/score (the total), one numeric column per reward function,
  advantage, group/uid (else consecutive rows with the same prompt form a group), gts/gold.
- `summary`: the last value of every logged key, plus what the script sets; the keys the script
  sets are sent with the run's config (under "summary") at `finish`.
- `finish(exit_code=None)`: succeeded (failed for a non-zero exit code); a run left open is
  finished at exit: failed after an uncaught exception, cancelled after Ctrl-C.
- Not supported (accepted and ignored, with one warning each): `watch`, `save`, `define_metric`,
  `alert`, `log_artifact`/`use_artifact`, `Image`, `Histogram`, `Video`, `Audio`, `Html`,
  `plot`, and text values in `log` (kept in `summary` only). Runs cannot be resumed by id.
"""
from __future__ import annotations

import atexit
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

from r1lab_client.client import Run as _Run
from r1lab_client.client import init as _create
from r1lab_client.rollouts import Grouper, RowMapper

__all__ = ["init", "log", "finish", "config", "summary", "run", "Table", "Error", "login", "watch", "save",
           "define_metric", "alert", "Image", "Histogram", "Video", "Audio", "Html", "Artifact", "Settings"]


class Error(Exception):
    pass


_warned: set[str] = set()


def _warn(what: str, message: str) -> None:
    if what not in _warned:
        _warned.add(what)
        print(f"r1lab_client.wandb: {message}", file=sys.stderr)


def _as_dict(obj) -> dict:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if callable(getattr(obj, "to_dict", None)):
        return dict(obj.to_dict())
    if hasattr(obj, "__dict__"):  # argparse.Namespace and plain objects
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError(f"config must be a dict, a dataclass or an argparse.Namespace (got {type(obj).__name__})")


class Config:
    """The run's hyperparameters; every change is sent to the server."""

    def __init__(self, values: dict | None = None, send=None):
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_send", send)

    def update(self, values, allow_val_change: bool | None = None) -> None:
        values = _as_dict(values)
        self._values.update(values)
        if self._send and values:
            self._send(values)

    def setdefaults(self, values) -> None:
        self.update({k: v for k, v in _as_dict(values).items() if k not in self._values})

    def __setitem__(self, key, value) -> None:
        self.update({key: value})

    def __setattr__(self, key, value) -> None:
        self.update({key: value})

    def __getitem__(self, key):
        return self._values[key]

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __contains__(self, key) -> bool:
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key, default=None):
        return self._values.get(key, default)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def as_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


class Summary(dict):
    """Last values of the logged keys; what the script sets itself is sent at `finish`."""

    def __init__(self):
        super().__init__()
        self.set_by_script: dict = {}

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.set_by_script[key] = value

    def update(self, other=(), **kw) -> None:
        for k, v in dict(other, **kw).items():
            self[k] = v

    def _last(self, values: dict) -> None:
        dict.update(self, values)


class Table:
    """Rows of columns, like `wandb.Table`; a table of completions is sent as rollout samples."""

    def __init__(self, columns=None, data=None, rows=None, dataframe=None, dtype=None, optional=True,
                 allow_mixed_types=False):
        if dataframe is not None:
            self.columns = [str(c) for c in dataframe.columns]
            self.data = [list(r) for r in dataframe.itertuples(index=False, name=None)]
        else:
            self.data = [list(r) for r in (data if data is not None else rows or [])]
            self.columns = list(columns) if columns is not None else [f"Column{i + 1}" for i in range(len(self.data[0]) if self.data else 0)]

    def add_data(self, *row) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"add_data: {len(row)} values for {len(self.columns)} columns")
        self.data.append(list(row))

    def add_column(self, name, data) -> None:
        if self.data and len(data) != len(self.data):
            raise ValueError(f"add_column: {len(data)} values for {len(self.data)} rows")
        self.columns.append(name)
        if not self.data:
            self.data = [[] for _ in data]
        for row, v in zip(self.data, data):
            row.append(v)

    def get_column(self, name) -> list:
        i = self.columns.index(name)
        return [row[i] for row in self.data]

    def rows(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.data]


class _Unsupported:
    """Image, Histogram, Video, …: accepted so that scripts run; not sent."""

    def __init__(self, *args, **kwargs):
        pass


class Image(_Unsupported):
    pass


class Histogram(_Unsupported):
    pass


class Video(_Unsupported):
    pass


class Audio(_Unsupported):
    pass


class Html(_Unsupported):
    pass


class Artifact(_Unsupported):
    def add_file(self, *a, **k):
        pass

    def add_dir(self, *a, **k):
        pass


class Settings(_Unsupported):
    pass


class WandbRun:
    """What `init` returns: `log`, `config`, `summary`, `finish`, `name`, `id`, `project`, `url`."""

    def __init__(self, channel: _Run | None, *, name: str, project: str, config: dict, page: str = ""):
        self._channel = channel
        self.name, self.project = name, project
        self.id = channel.run_url.rsplit("/", 1)[1] if channel else ""
        self.url = page
        self.config = Config(config, send=channel.update_config if channel else None)
        self.summary = Summary()
        self._step = 0
        self._groups = Grouper("consecutive", {})
        self._mapper = RowMapper()
        self._finished = False

    @property
    def step(self) -> int:
        return self._step

    @property
    def disabled(self) -> bool:
        return self._channel is None

    def log(self, data: dict, step: int | None = None, commit: bool | None = None) -> None:
        if self._finished:
            raise Error("this run is finished: call wandb.init() for a new one")
        if step is not None:
            step = int(step)
            if step < self._step:
                _warn(f"step<{step}", f"step {step} is lower than the current step {self._step}: ignored (as W&B does)")
                return
            self._step = step
            commit = False if commit is None else commit  # W&B: with a step, the row stays open
        elif commit is None:
            commit = True
        metrics: dict[str, float] = {}
        last: dict = {}
        for key, value in _flatten(data).items():
            if isinstance(value, Table):
                self._log_table(key, value)
                continue
            if isinstance(value, _Unsupported):
                _warn(type(value).__name__, f"{type(value).__name__} values are not sent to r1lab (key {key!r})")
                continue
            number = _number(value)
            if number is None:
                if isinstance(value, str):
                    last[key] = value
                else:
                    _warn(f"type:{type(value).__name__}", f"{type(value).__name__} values are not sent to r1lab (key {key!r})")
                continue
            last[key] = number
            if math.isfinite(number):
                metrics[key] = number
        self.summary._last(last)
        if self._channel is not None and metrics:
            self._channel.log(metrics, step=self._step)
        if commit:
            self._step += 1
            if self._channel is not None:
                self._channel._end_step()

    def _log_table(self, key: str, table: Table) -> None:
        rows = table.rows()
        if rows and self._mapper.missing(rows[0]):
            _warn(f"table:{key}", f"table {key!r} has no prompt and completion columns: not sent "
                                  "(r1lab keeps tables of completions, as rollout samples)")
            return
        samples = []
        for row in rows:
            got = self._mapper.map(row, default_step=self._step)
            if isinstance(got, str):
                _warn(f"table:{key}:{got[:30]}", f"table {key!r}: rows skipped: {got}")
                continue
            step, id_key, sample, index = got
            if step != self._step:  # TRL's table carries its own step column
                step = self._step
            sample["group"], position = self._groups.assign(step, id_key, sample["prompt"])
            sample["index"] = position if index is None else index
            samples.append(sample)
        if samples and self._channel is not None:
            self._channel.log_samples(samples, step=self._step)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None, *, status: str | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        status = status or ("succeeded" if not exit_code else "failed")
        if self._channel is not None:
            if self.summary.set_by_script:
                self._channel.update_config({"summary": dict(self.summary.set_by_script)})
            self._channel.finish(status)
        global run
        if run is self:
            run = None

    # accepted, not supported
    def watch(self, *a, **k):
        _warn("watch", "watch() is not supported (gradients and parameters are not sent)")

    def save(self, *a, **k):
        _warn("save", "save() is not supported (r1lab keeps no files of a run)")

    def define_metric(self, *a, **k):
        _warn("define_metric", "define_metric() is not supported: every series is plotted against the step")

    def alert(self, *a, **k):
        _warn("alert", "alert() is not supported (r1lab raises its own GRPO alarms)")

    def log_artifact(self, *a, **k):
        _warn("artifact", "artifacts are not supported")

    use_artifact = log_artifact

    def log_code(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.finish(status="cancelled")
        else:
            self.finish(exit_code=1 if exc_type is not None else 0)
        return False


def _number(v) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    item = getattr(v, "item", None)  # numpy and torch scalars, one-element tensors
    if callable(item) and not isinstance(v, (str, bytes)):
        try:
            x = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return float(x) if isinstance(x, (int, float)) else None
    return None


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def _disabled_mode(mode: str | None) -> str | None:
    mode = mode or os.environ.get("WANDB_MODE") or os.environ.get("R1LAB_MODE")
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        mode = "disabled"
    if mode in ("disabled", "offline", "dryrun"):
        return mode
    return None


# The current run, as in `wandb.run`; `config` and `summary` are its own once `init` ran.
run: WandbRun | None = None
config = Config()
summary = Summary()
_atexit_registered = False


def init(project: str | None = None, name: str | None = None, config=None, *, entity: str | None = None,
         notes: str | None = None, tags=None, group: str | None = None, job_type: str | None = None,
         mode: str | None = None, url: str | None = None, token: str | None = None, reinit=None, id=None,
         resume=None, dir=None, settings=None, **kwargs) -> WandbRun:
    """Create an r1lab run (see the module docstring); returns it and makes it `wandb.run`."""
    global run, summary, _atexit_registered
    g = globals()
    if run is not None:
        run.finish()
    if resume or id:
        _warn("resume", "resume/id are not supported: a new run is created")
    values = _as_dict(config)
    project = project or os.environ.get("WANDB_PROJECT") or "uncategorized"
    name = name or os.environ.get("WANDB_NAME") or f"{Path(sys.argv[0] or 'python').stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    meta = {k: v for k, v in {"entity": entity, "notes": notes, "tags": list(tags) if tags else None,
                              "group": group, "job_type": job_type}.items() if v}
    disabled = _disabled_mode(mode)
    if disabled:
        if disabled != "disabled":
            _warn("offline", f"mode {disabled!r}: r1lab has no offline store, nothing is sent")
        new = WandbRun(None, name=name, project=project, config=values)
    else:
        url = url or os.environ.get("R1LAB_URL")
        token = token or os.environ.get("R1LAB_TOKEN")
        if not (url and token):
            raise Error("r1lab_client.wandb.init: set R1LAB_URL and R1LAB_TOKEN (a personal API token), "
                        "or pass url= and token= (mode='disabled' sends nothing)")
        sent = dict(values)
        if meta:
            sent["wandb"] = meta
        channel = _create(url, token, name=name, project=project, config=sent)
        new = WandbRun(channel, name=name, project=project, config=values,
                       page=f"{url.rstrip('/')}/metrics/runs/{channel.run_url.rsplit('/', 1)[1]}/")
        print(f"r1lab_client.wandb: run {name!r} at {new.url}", file=sys.stderr)
    run = new
    g["config"] = new.config
    summary = new.summary
    if not _atexit_registered:
        atexit.register(_finish_at_exit)
        _atexit_registered = True
    return new


def _finish_at_exit() -> None:
    """A run left open: succeeded, or failed after an uncaught exception (cancelled: Ctrl-C)."""
    if run is not None:
        exc = getattr(sys, "last_value", None)
        if isinstance(exc, KeyboardInterrupt):
            run.finish(status="cancelled")
        else:
            run.finish(exit_code=1 if exc is not None and not isinstance(exc, SystemExit) else 0)


def _current() -> WandbRun:
    if run is None:
        raise Error("call r1lab_client.wandb.init() first")
    return run


def log(data: dict, step: int | None = None, commit: bool | None = None) -> None:
    _current().log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    if run is not None:
        run.finish(exit_code=exit_code)


def login(*args, **kwargs) -> bool:
    return True


def watch(*a, **k):
    _warn("watch", "watch() is not supported (gradients and parameters are not sent)")


def save(*a, **k):
    _warn("save", "save() is not supported (r1lab keeps no files of a run)")


def define_metric(*a, **k):
    _warn("define_metric", "define_metric() is not supported: every series is plotted against the step")


def alert(*a, **k):
    _warn("alert", "alert() is not supported (r1lab raises its own GRPO alarms)")
