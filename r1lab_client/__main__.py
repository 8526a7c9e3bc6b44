"""`python -m r1lab_client sync-tensorboard …` and `python -m r1lab_client sync-rollouts …`: bring
another trainer's logs into r1lab without changing its code (docs/integrations.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r1lab_client.sync import SyncState, add_run_arguments, open_run, run_loop


def _state_path(args, path: Path, what: str) -> Path:
    if args.state:
        return Path(args.state)
    if path.is_dir() or (not path.exists() and path.suffix not in (".jsonl", ".parquet")):  # a folder to come
        return path / f".r1lab-sync-{what}.json"
    return path.with_name(path.name + f".r1lab-sync-{what}.json")


def sync_tensorboard(args) -> int:
    from r1lab_client.tensorboard import TensorBoardTailer

    logdir = Path(args.logdir)
    if not logdir.is_dir() and not args.follow:  # with --follow: the trainer may not have started yet
        raise SystemExit(f"{logdir}: no such folder")
    state = SyncState(_state_path(args, logdir, "tensorboard"))
    tailer = TensorBoardTailer(logdir, state.data)
    run = open_run(args, state, source="tensorboard", default_name=logdir.resolve().name,
                   config={"logdir": str(logdir.resolve())})
    return run_loop(args, state, run, tailer.poll,
                    lambda: {"points": tailer.points, "skipped": tailer.skipped, "files": len(tailer.files)})


def sync_rollouts(args) -> int:
    from r1lab_client.rollouts import RolloutTailer, parse_map

    path = Path(args.path)
    if not path.exists() and not args.follow:
        raise SystemExit(f"{path}: no such file or folder")
    if args.kind == "trl" or path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise SystemExit("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        mapping = parse_map(args.map)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    state = SyncState(_state_path(args, path, f"rollouts-{args.kind}"))
    saved_map = state.data.get("map")
    if saved_map is not None and mapping and saved_map != mapping:
        raise SystemExit(f"{state.path} was synced with --map {saved_map}: the same columns must be used "
                         "(or start over with another --state)")
    state.data["map"] = saved_map if saved_map is not None and not mapping else mapping
    tailer = RolloutTailer(args.kind, path, state.data, state.data["map"])
    run = open_run(args, state, source=f"{args.kind} rollouts", default_name=path.resolve().name,
                   config={"rollouts": str(path.resolve())})
    return run_loop(args, state, run, tailer.poll,
                    lambda: {"samples": tailer.samples, "skipped": tailer.skipped, "files": len(tailer.files)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r1lab_client", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    tb = sub.add_parser("sync-tensorboard", help="tail TensorBoard event files into a run (every scalar a series)")
    tb.add_argument("logdir", help="the folder the trainer's SummaryWriter writes to (searched recursively)")
    add_run_arguments(tb)
    tb.set_defaults(func=sync_tensorboard)

    ro = sub.add_parser("sync-rollouts", help="tail another trainer's rollout dumps into a run's samples")
    ro.add_argument("kind", choices=["verl", "trl", "generic"],
                    help="verl: trainer.rollout_data_dir (STEP.jsonl); trl: OUTPUT_DIR/completions (*.parquet); "
                         "generic: JSONL/Parquet with --map")
    ro.add_argument("path", help="a dump file or folder (searched recursively)")
    ro.add_argument("--map", action="append", metavar="ROLE=COLUMN[,…]",
                    help="which column is which: prompt, completion, reward, rewards, rewards.NAME, advantage, "
                         "step, group, index, gold, prompt_id")
    add_run_arguments(ro)
    ro.set_defaults(func=sync_rollouts)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
