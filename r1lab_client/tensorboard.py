"""TensorBoard event files, tailed into an r1lab run: every scalar becomes a series.

    python -m r1lab_client sync-tensorboard LOGDIR --url http://r1lab:8000 --token $R1LAB_TOKEN \\
        --name my-run [--project P] [--follow]

Anything that writes TensorBoard logs (OpenRLHF, NeMo-RL, verl with `trainer.logger=[tensorboard]`,
Lightning, torchtune, a plain `torch.utils.tensorboard.SummaryWriter`) then shows live in r1lab.
Events are read with TensorBoard's own `EventFileLoader` (the reader TensorBoard's server tails
files with: it resumes at the end of the last whole record and leaves a half-written one for
the next poll), so `tensorboard` must be installed where the sync runs (`pip install
tensorboard`); r1lab_client itself imports it only here.

- A scalar `tag` at `step` with its wall time becomes the point (key, step, value, ts). Files in
  sub-folders of LOGDIR (`add_scalars`, one folder per run) are prefixed with the folder:
  `train_reward/reward`, `run2/loss`. Keys over 200 characters (the server's limit) are skipped.
- Histograms, images, text, audio, hparams and other plugins' data are skipped (counted).
- Progress is the number of records read from each event file, kept in the state file (default
  `LOGDIR/.r1lab-sync-tensorboard.json`); a restart skips those records and sends what follows.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

MAX_KEY = 200


def _shortest(x) -> float:
    """A float32 scalar as the shortest decimal that reads back to it (0.1, not 0.10000000149),
    as TensorBoard shows it; other dtypes as they are."""
    return float(str(x)) if getattr(x, "dtype", None) is not None and x.dtype.itemsize == 4 and x.dtype.kind == "f" \
        else float(x)


def _loader_cls():
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        raise SystemExit("sync-tensorboard reads event files with TensorBoard's reader: pip install tensorboard") from None
    return EventFileLoader, tensor_util


class TensorBoardTailer:
    def __init__(self, logdir: str | Path, state: dict):
        self.logdir = Path(logdir)
        self.files: dict = state.setdefault("files", {})
        self.loader_cls, self.tensor_util = _loader_cls()
        import numpy  # tensorboard's own dependency

        self.np = numpy
        self.loaders: dict = {}  # rel path -> [loader, records still to skip]
        self.points = self.skipped = 0
        self.warned: set[str] = set()

    def discover(self) -> list[Path]:
        if not self.logdir.is_dir():
            return []
        return sorted(p for p in self.logdir.rglob("*tfevents*")
                      if p.is_file() and not any(x.startswith(".r1lab-sync") for x in p.relative_to(self.logdir).parts))

    def poll(self, run, budget: int = 200_000) -> bool:
        """Queue the scalars of up to `budget` new event records on `run`. True when more wait."""
        left = budget
        for path in self.discover():
            rel = path.relative_to(self.logdir).as_posix()
            st = self.files.setdefault(rel, {"records": 0})
            entry = self.loaders.get(rel)
            if entry is None:
                # A fresh reader starts at the file's beginning: the records already sent are
                # read again and skipped (the compat reader cannot seek to an offset).
                entry = self.loaders[rel] = [self.loader_cls(str(path)), st["records"]]
            loader = entry[0]
            prefix = path.parent.relative_to(self.logdir).as_posix()
            prefix = "" if prefix == "." else prefix + "/"
            for event in loader.Load():
                if entry[1] > 0:
                    entry[1] -= 1
                    continue
                st["records"] += 1
                left -= 1
                self._event(run, event, prefix)
                if left <= 0:
                    return True
        return False

    def _event(self, run, event, prefix: str) -> None:
        if not event.HasField("summary"):
            return
        metrics = {}
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            plugin = value.metadata.plugin_data.plugin_name
            if kind == "simple_value":  # a float32 in the file
                number = _shortest(self.np.float32(value.simple_value))
            elif kind == "tensor" and plugin == "scalars":
                number = _shortest(self.tensor_util.make_ndarray(value.tensor).reshape(())[()])
            else:
                self.skipped += 1
                continue
            key = prefix + value.tag
            if len(key) > MAX_KEY or "\x00" in key:
                self._warn(key, f"tag {key[:60]!r}…: longer than {MAX_KEY} characters, skipped")
                self.skipped += 1
                continue
            if math.isfinite(number):  # JSON has no NaN: the client drops them too
                metrics[key] = number
        if metrics and event.step < 0:
            self.skipped += len(metrics)
        elif metrics:
            run.log(metrics, step=int(event.step), ts=float(event.wall_time))
            self.points += len(metrics)

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(f"r1lab_client: {message}", file=sys.stderr)
