"""What the `sync-*` commands share: the state file, the run they log to, the poll loop.

The state file (JSON, mode 0600: it holds the run's token) records the run (its URL and ingest
token, so a restart logs to the same run) and how far each source file was read. It is written
only after the run has flushed, that is after what was read is on the server or in the client's
fsynced spool: a sync stopped at any point and restarted reads nothing twice, except the last
poll when it was killed between the flush and the state write; the server keeps one copy of a
point per (key, step) and of a sample per (step, group, index), so even that stores nothing twice.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

from r1lab_client.client import Run, init


class SyncState:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.data: dict = {}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError as exc:
                raise SystemExit(f"{self.path}: not a sync state file ({exc}); move it away to start over") from None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


def add_run_arguments(p) -> None:
    p.add_argument("--url", default=os.environ.get("R1LAB_URL"), help="the r1lab server (default: $R1LAB_URL)")
    p.add_argument("--token", default=os.environ.get("R1LAB_TOKEN"),
                   help="a personal API token, to create the run (default: $R1LAB_TOKEN)")
    p.add_argument("--name", help="the run's name (default: the folder's name)")
    p.add_argument("--project", default="", help="the run's project")
    p.add_argument("--run-url", help="log into this existing run (…/api/v1/runs/ID) instead of creating one; "
                                     "its run token in $R1LAB_RUN_TOKEN")
    p.add_argument("--run-from", metavar="STATE_FILE",
                   help="log into the run of another sync (its state file), e.g. the TensorBoard sync's")
    p.add_argument("--state", help="the state file (default: beside the synced folder or file)")
    p.add_argument("--follow", action="store_true", help="keep tailing until stopped (Ctrl-C or SIGTERM)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --follow (default 2)")
    p.add_argument("--no-finish", action="store_true",
                   help="without --follow: leave the run open instead of marking it succeeded at the end")


def open_run(args, state: SyncState, *, source: str, default_name: str, config: dict) -> Run:
    """The run this sync logs to: the state file's, else --run-from/--run-url, else a new one."""
    saved = state.data.get("run")
    if not saved:
        if args.run_from:
            other = json.loads(Path(args.run_from).read_text()).get("run")
            if not other:
                raise SystemExit(f"{args.run_from}: holds no run yet")
            saved = {"url": other["url"], "token": other["token"], "page": other.get("page", "")}
        elif args.run_url:
            token = os.environ.get("R1LAB_RUN_TOKEN")
            if not token:
                raise SystemExit("--run-url needs the run's token in $R1LAB_RUN_TOKEN")
            saved = {"url": args.run_url.rstrip("/"), "token": token, "page": ""}
        else:
            if not (args.url and args.token):
                raise SystemExit("give --url and --token (a personal API token), or set R1LAB_URL and R1LAB_TOKEN")
            run = init(args.url, args.token, name=args.name or default_name, project=args.project,
                       config={"source": source, **config})
            saved = {"url": run.run_url, "token": run.token,
                     "page": args.url.rstrip("/") + "/metrics/runs/" + run.run_url.rsplit("/", 1)[1] + "/"}
        state.data["run"] = saved
        state.save()
        print(f"r1lab_client: logging to {saved.get('page') or saved['url']}", file=sys.stderr)
    # The spool lives beside the state file: what the server did not get survives a reboot too.
    return Run(saved["url"], saved["token"], spool_dir=state.path.with_name(state.path.name + ".spool"))


def run_loop(args, state: SyncState, run: Run, poll, totals) -> int:
    """Poll, flush, save the state; again every `--interval` s with `--follow` until SIGINT/SIGTERM,
    then one last poll. Prints `synced: …` (what this process sent) at the end."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        delivered = _loop(args, state, run, poll, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("synced: " + " ".join(f"{k}={v}" for k, v in totals().items()) +
          ("" if delivered else f" (the server is away: {run.pending()} batches spooled in {run.spool_dir}, "
                                "sent on the next run)"), flush=True)
    return 0 if delivered else 1


def _loop(args, state: SyncState, run: Run, poll, stop: threading.Event) -> bool:
    while True:
        more = poll(run)
        run.flush()  # what was read is on the server or in the fsynced spool: now the state may say so
        state.save()
        if more and not stop.is_set():
            continue
        if not args.follow or stop.is_set():
            break
        stop.wait(args.interval)
    if not args.follow and not args.no_finish and not stop.is_set():
        return run.finish("succeeded")
    return run.pending() == 0  # just flushed: no second round of retries
