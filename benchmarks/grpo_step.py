"""GRPO step time on the tiny model: our loop vs TRL 1.16's GRPOTrainer, same setting, alternated.

    .venv/bin/python benchmarks/grpo_step.py [--rounds 3 --steps 6 --threads 1]

Setting: 8 prompts x G=8 completions, at most 48 new tokens, beta=0.04 (so both run a reference
model), lr 1e-6 (TRL's default), the tiny char-level Llama from `training_backend.tiny` (the demo's
pretrained base when var/tiny-base exists, else a fresh one), rewards accuracy + format
(training_backend.rewards in both). Each round runs our loop for --steps steps in one process, then
TRL for --steps steps in another; the first step of each process is warm-up and not counted.
torch threads are pinned (--threads) in both.

TRL runs in its own virtualenv, var/bench-venv (torch==2.13.0 CPU wheel, trl==1.16.0), created by
this script when missing (`--setup-only` just creates it); trl is never a dependency of r1lab.

Writes benchmarks/results/grpo_step.json and prints a table: median step time and its breakdown
(generate / reference / train) for ours; median step and generate time for TRL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_VENV = ROOT / "var" / "bench-venv"
TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
PROMPTS, G, NEW_TOKENS, BETA, LR = 8, 8, 48, 0.04, 1e-6


def ensure_bench_venv() -> Path:
    py = BENCH_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import trl, math_verify"], capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    torch_req = TORCH_WHEEL if Path(TORCH_WHEEL).exists() else "torch==2.13.0"
    subprocess.run([str(py), "-m", "pip", "install", "-q", torch_req], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "trl==1.16.0", "transformers==5.23.0",
                    "math-verify==0.9.0"], check=True)  # the shared accuracy reward needs it
    return py


def model_dir(workdir: Path) -> Path:
    base = ROOT / "var" / "tiny-base"
    if (base / "config.json").exists():
        return base
    from training_backend import tiny

    path = workdir / "fresh-tiny"
    if not (path / "config.json").exists():
        model, tok = tiny.build_model(seed=0)
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return path


def prompts_file(workdir: Path) -> Path:
    from training_backend import tiny

    path = workdir / "prompts.jsonl"
    rows, _ = tiny.demo_splits()
    # the template applied here so that both trainers see identical prompt strings
    tiny.write_jsonl([{**r, "prompt": tiny.TEMPLATE.format(prompt=r["prompt"])} for r in rows[:256]], path)
    return path


# --- one side per process -------------------------------------------------------------------------

def run_ours(model: str, data: str, steps: int, threads: int, out: str) -> None:
    import torch

    torch.set_num_threads(threads)
    from training_backend.config import parse_spec
    from training_backend.grpo import train
    from training_backend.report import MemoryReporter

    with tempfile.TemporaryDirectory() as tmp:
        spec = parse_spec({"kind": "grpo", "model_path": model, "output_dir": tmp, "train_data": data, "seed": 0,
                           "config": {"max_steps": steps, "num_generations": G, "batch_size": PROMPTS * G,
                                      "max_completion_length": NEW_TOKENS, "beta": BETA, "learning_rate": LR,
                                      "engine": "torch", "save_steps": 10**6, "log_samples": 0,
                                      "reward_funcs": ["accuracy", "format"], "loss_type": "dapo"}})
        rep = MemoryReporter()
        train(spec, rep, progress=lambda _: None, handle_sigterm=False)
    res = {k: rep.series(k)[1:] for k in ("step_time", "time/generate", "time/reference", "time/train", "time/reward",
                                           "completions/mean_length")}
    Path(out).write_text(json.dumps(res))


def run_trl(model: str, data: str, steps: int, threads: int, out: str) -> None:
    import torch

    torch.set_num_threads(threads)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from training_backend.rewards import REWARD_FUNCS
    from training_backend.tiny import CharTokenizer

    tok = CharTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model)
    ds = load_dataset("json", data_files=data, split="train")
    gen_times: list[float] = []
    real_generate = policy.generate

    def timed_generate(*a, **kw):
        t = time.perf_counter()
        r = real_generate(*a, **kw)
        gen_times.append(time.perf_counter() - t)
        return r

    policy.generate = timed_generate

    def accuracy(completions, answer, **kw):
        return REWARD_FUNCS["accuracy"](completions, answer=answer)

    def fmt(completions, **kw):
        return REWARD_FUNCS["format"](completions)

    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step_times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(output_dir=tmp, per_device_train_batch_size=PROMPTS * G, num_generations=G,
                         max_completion_length=NEW_TOKENS, beta=BETA, learning_rate=LR, max_steps=steps,
                         use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                         dataloader_num_workers=0, seed=0, disable_tqdm=True)
        trainer = GRPOTrainer(model=policy, reward_funcs=[accuracy, fmt], args=cfg, train_dataset=ds,
                              processing_class=tok, callbacks=[Timer()])
        trainer.train()
    Path(out).write_text(json.dumps({"step_time": step_times[1:], "time/generate": gen_times[1:]}))


# --- orchestration --------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6, help="steps per process (the first is warm-up)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--setup-only", action="store_true")
    p.add_argument("--skip-trl", action="store_true", help="measure only our loop (no bench venv)")
    args = p.parse_args()
    if args.side == "ours":
        return run_ours(args.model, args.data, args.steps, args.threads, args.out)
    if args.side == "trl":
        return run_trl(args.model, args.data, args.steps, args.threads, args.out)

    trl_py = None if args.skip_trl else ensure_bench_venv()
    if args.setup_only:
        return
    work = ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    model, data = model_dir(work), prompts_file(work)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, dict[str, list[float]]] = {"ours": {}, "trl": {}}
    sides = [("ours", sys.executable)] + ([("trl", str(trl_py))] if trl_py else [])
    for rnd in range(args.rounds):
        for side, py in sides:
            out = work / f"{side}-{rnd}.json"
            cmd = [py, __file__, "--side", side, "--model", str(model), "--data", str(data), "--steps", str(args.steps),
                   "--threads", str(args.threads), "--out", str(out)]
            t = time.perf_counter()
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"{side} failed:\n{r.stderr[-4000:]}")
            for k, v in json.loads(out.read_text()).items():
                results[side].setdefault(k, []).extend(v)
            print(f"round {rnd} {side}: {time.perf_counter() - t:.0f}s, step times "
                  f"{[round(x, 3) for x in json.loads(out.read_text())['step_time']]}", flush=True)

    med = {side: {k: statistics.median(v) for k, v in d.items() if v} for side, d in results.items()}
    ours, trl = med["ours"], med.get("trl", {})
    summary = {
        "setting": {"prompts": PROMPTS, "G": G, "max_new_tokens": NEW_TOKENS, "beta": BETA, "lr": LR,
                    "threads": args.threads, "rounds": args.rounds, "steps_per_process": args.steps,
                    "model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else "fresh tiny (random init)",
                    "machine": f"{os.cpu_count()} shared CPU cores, no GPU"},
        "ours_median_s": ours, "trl_median_s": trl,
        "ratio_ours_over_trl": ours["step_time"] / trl["step_time"] if trl else None,
        "raw": results,
        "command": "python benchmarks/grpo_step.py " + " ".join(sys.argv[1:]),
    }
    print(f"\n{'':10}{'step':>8}{'generate':>10}{'reference':>11}{'train':>8}{'reward':>8}")
    print(f"{'ours':10}{ours['step_time']:8.3f}{ours['time/generate']:10.3f}{ours['time/reference']:11.3f}"
          f"{ours['time/train']:8.3f}{ours['time/reward']:8.3f}")
    if trl:
        print(f"{'TRL 1.16':10}{trl['step_time']:8.3f}{trl.get('time/generate', float('nan')):10.3f}")
        print(f"\nours / TRL = {summary['ratio_ours_over_trl']:.2f}")
    out = ROOT / "benchmarks" / "results" / "grpo_step.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
