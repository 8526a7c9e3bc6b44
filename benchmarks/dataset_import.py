"""How long an import preview reads a file: rows/s of r1lab.dataset_formats per kind of upload.

    .venv/bin/python benchmarks/dataset_import.py [--rows 40000] [--reps 3]

A GSM8K-shaped set (question, worked answer ending in `#### n`; random words, so that Parquet and
the archive do not compress it away: about 600 bytes a row as JSONL) written as JSONL, CSV,
Parquet and a `datasets` save_to_disk .zip, then read whole, as each import's preview reads it:
prompt rows (the prompt-set import) and cold-start examples (curation; their validation too).
Median of --reps; the kinds interleaved rep by rep. No database: the checks and writes of the
curation import itself are benchmarks/curation.py's.

What it decides: R1LAB_IMPORT_BACKGROUND_BYTES (2 MiB), below which a preview is read in the
request; above, in a Celery task with progress on the page. Writes benchmarks/results/dataset_import.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")

import django  # noqa: E402

django.setup()

from r1lab.curation.formats import parse_file  # noqa: E402
from r1lab.dataset_formats import kind_from_filename  # noqa: E402
from r1lab.pipelines.prompt_import import parse_prompt_file  # noqa: E402
from tests.dataset_formats.fixtures import encode  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "dataset_import.json"
WORDS = [w for w in "the of and to in is was for on are with as at by an be this from or have not but what all were when we there can more if out so up said about into than them only other new some could time these two may then first any way well should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three".split()]


def _rows(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(k))

    out = []
    for i in range(n):
        a, b = rnd.randint(2, 999), rnd.randint(2, 999)
        out.append({"question": f"{text(25)} {a} {text(8)} {b}?",
                    "answer": f"{text(20)} {a}+{b} = <<{a}+{b}={a + b}>>{a + b}.\n{text(20)}\n#### {a + b}"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rows = _rows(args.rows)
    files = {kind: encode(rows, kind) for kind in ("jsonl", "csv", "parquet", "zip")}
    times: dict[tuple[str, str], list[float]] = {(k, t): [] for k in files for t in ("prompts", "cold_start")}
    for _ in range(args.reps):
        for kind, (filename, data) in files.items():
            t0 = time.perf_counter()
            result = parse_prompt_file(data=data, filename=filename, kind="math")
            times[(kind, "prompts")].append(time.perf_counter() - t0)
            assert result.ok and len(result.rows) == len(rows), result.errors[:3]
            t0 = time.perf_counter()
            result = parse_file(data, file_format=kind_from_filename(filename))
            times[(kind, "cold_start")].append(time.perf_counter() - t0)
            assert result.ok and len(result.rows) == len(rows), result.errors[:3]
    table = []
    print(f"{len(rows):,} GSM8K-shaped rows, median of {args.reps}\n")
    print("| upload | MB | target | s | rows/s | s per 2 MiB |\n|---|---|---|---|---|---|")
    for (kind, target), ts in times.items():
        size = len(files[kind][1])
        secs = statistics.median(ts)
        per_2mib = secs * (2 << 20) / size
        table.append({"upload": kind, "bytes": size, "target": target, "seconds": round(secs, 3),
                      "rows_per_s": round(len(rows) / secs), "seconds_per_2mib": round(per_2mib, 3), "all": [round(t, 3) for t in ts]})
        print(f"| {kind} | {size / 1e6:.1f} | {target} | {secs:.2f} | {len(rows) / secs:,.0f} | {per_2mib:.2f} |")
    load = os.getloadavg()[0]
    print(f"\nload (1 min) {load:.1f} on {os.cpu_count()} CPUs")
    RESULTS.write_text(json.dumps({
        "command": "benchmarks/dataset_import.py " + " ".join(sys.argv[1:]), "rows": len(rows), "reps": args.reps,
        "results": table, "load_1min": load, "cpus": os.cpu_count(), "python": platform.python_version(),
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
