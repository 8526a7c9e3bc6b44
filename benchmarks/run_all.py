"""`make bench`: run every benchmark script in this folder, one after the other.

Each script prints its own table and writes benchmarks/results/<name>.json. Benchmarks that
need PostgreSQL read DATABASE_URL (they say so and skip when it is not a postgres:// URL).
Run one alone with `.venv/bin/python benchmarks/<name>.py`; `make bench ONLY=name1,name2`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ON_GPU_ONLY = {"gpu_check"}


def main() -> int:
    only = {n.strip() for n in os.environ.get("ONLY", "").split(",") if n.strip()}
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != "run_all.py" and not p.name.startswith("_"))
    if only:
        scripts = [p for p in scripts if p.stem in only]
    else:  # needs a CUDA machine and its own Python: `make gpu-check`
        scripts = [p for p in scripts if p.stem not in ON_GPU_ONLY]
    if not scripts:
        print("no benchmarks to run")
        return 0
    results = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        results.append((script.stem, code, time.monotonic() - started))
    print("\n| benchmark | exit | seconds |\n|---|---|---|")
    for name, code, secs in results:
        print(f"| {name} | {code} | {secs:.0f} |")
    return 1 if any(code for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
