"""The miniature R1-Zero: run the demo from a fixed seed and plot its three curves.

    .venv/bin/python benchmarks/r1zero_demo.py [--steps 100] [--threads 1] [--fresh-base] [--arch qwen2]
    .venv/bin/python benchmarks/r1zero_demo.py --plot-only var/demo/metrics.jsonl

Runs `python -m training_backend demo` (which pretrains the tiny base first when var/tiny-base is
missing), then reads its metrics JSONL and writes
- benchmarks/results/r1zero_demo.json: wall time, the first-10 vs last-10 step means of accuracy
  reward, response length and reflection rate, the held-out eval, and every step's values;
- benchmarks/results/r1zero_demo.jsonl: the run's per-step summary (one line a step: the curves);
- benchmarks/results/r1zero_demo.html and .png: the three curves (PNG by kaleido where installed, else
  drawn by plotly.js in the system Chromium; `--png-only` redraws both from the committed .jsonl).
With `--arch qwen2` (or llama) the base is the real-architecture one (`make-base --arch`, in
var/qwen2-base) and the files are named r1zero_demo-qwen2.*.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
CURVES = [("rewards/accuracy/mean", "accuracy reward"), ("completions/mean_length", "response length (tokens)"),
          ("reflection/frac_responses", "share of responses that reflect"),
          ("reflection/rate_per_1k_tokens", "reflections per 1k tokens")]


def read_series(path: Path) -> tuple[dict[str, dict[int, float]], dict]:
    series: dict[str, dict[int, float]] = {}
    samples: dict[int, list] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "key" in row and row["value"] is not None:
            series.setdefault(row["key"], {})[row["step"]] = row["value"]
        elif "sample" in row:
            samples.setdefault(row["step"], []).append(row["sample"])
    return series, samples


def summarise(series: dict[str, dict[int, float]]) -> dict:
    out = {}
    for key, _ in CURVES + [("reward", ""), ("rewards/format/mean", ""), ("completions/clipped_ratio", ""),
                            ("step_time", "")]:
        pts = [v for _, v in sorted(series.get(key, {}).items())]
        if len(pts) >= 20:
            first, last = sum(pts[:10]) / 10, sum(pts[-10:]) / 10
            out[key] = {"first10": round(first, 4), "last10": round(last, 4), "delta": round(last - first, 4)}
    return out


TITLES = {"tiny": "the tiny char-level Llama", "qwen2": "the 6.9M Qwen2 with a byte-level BPE (make-base --arch qwen2)",
          "llama": "the 6.9M Llama with a byte-level BPE (make-base --arch llama)"}


def plot(series: dict[str, dict[int, float]], html: Path, png: Path, arch: str = "tiny") -> str | None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in CURVES[:3]])
    for i, (key, title) in enumerate(CURVES[:3], start=1):
        pts = sorted(series.get(key, {}).items())
        fig.add_trace(go.Scatter(x=[s for s, _ in pts], y=[v for _, v in pts], mode="lines", name=title), row=1, col=i)
        fig.update_xaxes(title_text="GRPO step", row=1, col=i)
    fig.update_layout(title=f"Miniature R1-Zero on {TITLES[arch]} (CPU)", showlegend=False,
                      width=1200, height=380)
    fig.write_html(html, include_plotlyjs="cdn")
    try:
        fig.write_image(png)
        return None
    except Exception as exc:  # kaleido is not installed here: the system Chromium renders it instead
        kaleido_error = f"{type(exc).__name__}: {str(exc)[:120]}"
    try:
        _png_with_chromium(fig, png)
        return None
    except Exception as exc:
        return f"PNG export unavailable: kaleido {kaleido_error}; chromium {type(exc).__name__}: {str(exc)[:120]}"


def _png_with_chromium(fig, png: Path) -> None:
    """The figure drawn by plotly.js (inlined, no network) in headless Chromium, screenshot to PNG."""
    import tempfile

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _tracking_browser import ARGS, CHROMIUM  # the benchmarks' one Chromium launch setup

    with tempfile.TemporaryDirectory() as tmp:
        page_html = Path(tmp) / "fig.html"
        fig.write_html(page_html, include_plotlyjs=True, full_html=True, div_id="fig")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": fig.layout.width, "height": fig.layout.height})
            page.goto(page_html.as_uri())
            page.wait_for_selector("#fig .main-svg")
            page.locator("#fig").screenshot(path=str(png))
            browser.close()


def read_summary(path: Path) -> dict[str, dict[int, float]]:
    """The committed per-step summary (r1zero_demo.jsonl) back into series."""
    series: dict[str, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for k, v in row.items():
            if k != "step":
                series.setdefault(k, {})[row["step"]] = v
    return series


def _uptime() -> str:
    """`uptime`'s line (load averages over 1, 5, 15 min): the machine is shared, timings depend on it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-base", action="store_true", help="delete var/<arch>-base first (time the whole thing)")
    p.add_argument("--arch", choices=("tiny", "qwen2", "llama"), default="tiny")
    p.add_argument("--base-steps", type=int, help="pretraining steps of a base built here (make-base's default)")
    p.add_argument("--plot-only", help="an existing metrics JSONL: only summarise and plot it")
    p.add_argument("--config", help="JSON GRPOConfig overrides passed to the demo")
    p.add_argument("--png-only", action="store_true",
                   help="only draw the PNG and HTML again from benchmarks/results/r1zero_demo.jsonl")
    args = p.parse_args()
    name = "r1zero_demo" + ("" if args.arch == "tiny" else f"-{args.arch}")
    if args.png_only:
        note = plot(read_summary(RESULTS / f"{name}.jsonl"), RESULTS / f"{name}.html", RESULTS / f"{name}.png", args.arch)
        print(note or f"wrote {RESULTS / f'{name}.png'}")
        return

    command = None
    wall = base_s = load_before = load_after = None
    if args.plot_only:
        metrics = Path(args.plot_only)
    else:
        metrics = ROOT / "var" / "demo" / "metrics.jsonl"
        if args.fresh_base:
            shutil.rmtree(ROOT / "var" / f"{args.arch}-base", ignore_errors=True)
        shutil.rmtree(ROOT / "var" / "demo", ignore_errors=True)
        command = [sys.executable, "-m", "training_backend", "demo", "--steps", str(args.steps), "--metrics-out",
                   str(metrics), "--threads", str(args.threads), "--seed", str(args.seed), "--arch", args.arch]
        if args.base_steps:
            command += ["--base-steps", str(args.base_steps)]
        if args.config:
            command += ["--config", args.config]
        load_before = _uptime()
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # echo, and catch the base build's time
            sys.stdout.write(line)
            m = re.match(r"base model written to .* in (\d+)s", line)
            if m:
                base_s = float(m.group(1))
        if proc.wait():
            raise subprocess.CalledProcessError(proc.returncode, command)
        wall = time.perf_counter() - t0
        load_after = _uptime()

    series, samples = read_series(metrics)
    summary = summarise(series)
    evals = {k: v for k, v in ((k, sorted(d.items())) for k, d in series.items()) if k.startswith("eval/")}
    last_step = max(samples) if samples else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    png_note = plot(series, RESULTS / f"{name}.html", RESULTS / f"{name}.png", args.arch)
    result = {
        "command": "python benchmarks/r1zero_demo.py " + " ".join(sys.argv[1:]),
        "demo_command": " ".join(["python", *command[1:]]) if command else None,
        "wall_s": round(wall, 1) if wall else None,
        "base_build_s": base_s,
        "grpo_s": round(wall - (base_s or 0), 1) if wall else None,
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "first10_vs_last10": summary,
        "eval": evals,
        "png": png_note or f"benchmarks/results/{name}.png",
        "example_last_step": samples.get(last_step, [])[:4] if last_step else [],
        "series": {k: [v for _, v in sorted(series[k].items())] for k, _ in CURVES + [("reward", "")] if k in series},
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    with open(RESULTS / f"{name}.jsonl", "w") as f:  # the run's per-step summary: one line a step
        steps = sorted({s for k, _ in CURVES + [("reward", "")] for s in series.get(k, {})})
        for s in steps:
            f.write(json.dumps({"step": s, **{k: series[k][s] for k, _ in CURVES + [("reward", ""), ("step_time", "")]
                                              if s in series.get(k, {})}}) + "\n")
    for k, v in summary.items():
        print(f"{k:34} first10 {v['first10']:8.3f}   last10 {v['last10']:8.3f}   delta {v['delta']:+8.3f}")
    if wall:
        print(f"wall time {wall:.0f}s")
    if png_note:
        print(png_note)


if __name__ == "__main__":
    main()
