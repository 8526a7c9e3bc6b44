"""`make gpu-check`: is a CUDA machine ready for r1lab? A short GRPO stage (DeepSpeed ZeRO-2, bf16,
β > 0 so the reference model runs too) and a short SFT stage (the same engine) on a small Qwen2,
each through the real CLI (`python -m training_backend run SPEC.json`), and what they measured:
step time, tokens/s and peak GPU memory (`torch.cuda.max_memory_allocated`, reported by the
trainer as `perf/max_memory_allocated_gb`) -> benchmarks/results/gpu_check.json.

    python benchmarks/gpu_check.py            # on the GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --cpu      # the same path on this CPU, fp32, tiny: CI's smoke test

Without a CUDA device (and without --cpu) it stops at once: "no CUDA device: this check needs a
GPU". `--cpu` runs the same two stages through the same CLI and DeepSpeed ZeRO-2, in fp32 (bf16
is refused on a CPU), on a tiny model for 2 steps, and writes gpu_check_cpu.json instead.

What the GPU machine needs: this repo, Python with a CUDA torch and transformers, and DeepSpeed.
The GPU machine may have no network, so the wheels are built here (`make gpu-wheels`:
`DS_BUILD_OPS=0 pip wheel --no-deps deepspeed==0.19.8`, plus its pure dependencies for CPython
3.12) and installed there offline (`pip install --no-index --find-links var/gpu-wheels deepspeed`).
DS_BUILD_OPS=0: no CUDA op is compiled at install; the trainer passes a torch AdamW, so DeepSpeed
needs none of its fused ops.

The model: a Qwen2 (the architecture of Qwen2.5 and the R1 distills) of ~24M parameters with the
project's char tokenizer (the trainer's loader today; `--model PATH` checks any folder it loads,
e.g. the BPE-tokenizer model of `make-base --arch qwen2`). Randomly initialised: rewards are ~0,
which does not matter here (every step still generates, scores, runs the reference and trains)
and makes completions run to their full length, the worst case for time and memory. The first
step of each stage is warm-up (CUDA context, allocator, kernels): medians are over the others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
NO_CUDA = "no CUDA device: this check needs a GPU (run `python benchmarks/gpu_check.py --cpu` for the CPU dry run)"
MEMORY_KEY = "perf/max_memory_allocated_gb"

# (model, GRPO, SFT) per mode. GPU: 8 prompts x G=8, 128 new tokens (the GRPO-step benchmark's
# setting); CPU: as small as still runs every part of the path.
SETTINGS = {
    "gpu": {
        "model": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                      num_key_value_heads=2, max_position_embeddings=1024),
        "grpo": dict(max_steps=6, num_generations=8, batch_size=64, max_completion_length=128, max_prompt_length=64,
                     beta=0.04, learning_rate=1e-6, bf16=True),
        "sft": dict(max_steps=6, batch_size=16, max_seq_length=256, learning_rate=1e-5, bf16=True),
    },
    "cpu": {
        "model": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128),
        "grpo": dict(max_steps=2, num_generations=2, batch_size=4, max_completion_length=8, max_prompt_length=32,
                     beta=0.04, learning_rate=1e-6, bf16=False, torch_threads=1),
        "sft": dict(max_steps=2, batch_size=4, max_seq_length=96, learning_rate=1e-5, bf16=False, torch_threads=1),
    },
}
COMMON = dict(engine="deepspeed", zero_stage=2, save_steps=10**6, save_total_limit=1)
GRPO_COMMON = dict(reward_funcs=["accuracy", "format"], log_samples=0, eval_steps=0, loss_type="dapo")


def preflight(cpu: bool) -> str | None:
    """Why this machine cannot run the check, or None."""
    import importlib.util

    import torch

    if not cpu and not torch.cuda.is_available():
        return NO_CUDA
    if importlib.util.find_spec("deepspeed") is None:
        return ("DeepSpeed is not installed: build the wheels on a machine with a package registry (`make gpu-wheels`) "
                "and install them here: pip install --no-index --find-links var/gpu-wheels deepspeed")
    return None


def build_model(folder: Path, mode: str) -> dict:
    """A randomly initialised Qwen2 with the char tokenizer, saved the way make-base saves."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training_backend import tiny

    tok = tiny.CharTokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None, **SETTINGS[mode]["model"])
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "r1lab_template.txt").write_text(tiny.TEMPLATE)
    return {"architecture": type(model).__name__, "parameters": model.num_parameters(), "tokenizer": "CharTokenizer",
            **SETTINGS[mode]["model"]}


def write_data(folder: Path) -> tuple[Path, Path]:
    """Arithmetic prompts (GRPO) and worked-answer conversations (SFT) from training_backend.tiny."""
    from training_backend import tiny

    rows, _ = tiny.demo_splits()
    prompts = folder / "prompts.jsonl"
    tiny.write_jsonl(rows[:256], prompts)
    rng = random.Random(0)
    chats = []
    for r in rows[:256]:
        a, b = (int(x) for x in r["prompt"].split("+"))
        text, ans = tiny.think_pass(a, b, 0.0, rng)
        chats.append({"id": r["id"], "answer": ans, "messages": [
            {"role": "user", "content": r["prompt"]},
            {"role": "assistant", "content": f"<think> {text} </think> <answer> {ans} </answer>"}]})
    chat = folder / "chat.jsonl"
    tiny.write_jsonl(chats, chat)
    return prompts, chat


def run_stage(kind: str, model: Path, data: Path, work: Path, config: dict) -> dict:
    """One stage through the real CLI: its per-step metrics, its exit code, and the peak RSS of its
    processes (wait4: the largest of the trainer and the children it waited for, a JIT build included)."""
    out = work / kind
    spec = {"kind": kind, "model_path": str(model), "output_dir": str(out), "train_data": str(data),
            "eval_data": None, "seed": 0, "config": config}
    spec_path = work / f"{kind}.SPEC.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    metrics_path, log_path = work / f"{kind}.metrics.jsonl", work / f"{kind}.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "training_backend", "run", str(spec_path),
                                 "--metrics-out", str(metrics_path)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    series: dict[str, dict[int, float]] = {}
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            d = json.loads(line)
            if "key" in d and d.get("value") is not None:
                series.setdefault(d["key"], {})[d["step"]] = d["value"]
    return {"exit_code": code, "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "series": series, "log_tail": log_path.read_text()[-3000:] if code else ""}


def summarize(run: dict, *, tokens_key: str, breakdown: tuple[str, ...] = ()) -> dict:
    """Medians over the timed steps (all but the first, when there are more), the peak memory."""
    series = run["series"]
    steps = sorted(series.get("step_time", {}))
    timed = steps[1:] if len(steps) > 1 else steps

    def median(key: str) -> float | None:
        values = [series[key][s] for s in timed if s in series.get(key, {})]
        return round(statistics.median(values), 4) if values else None

    memory = series.get(MEMORY_KEY, {})
    return {
        "exit_code": run["exit_code"], "steps": len(steps), "timed_steps": len(timed), "wall_s": run["wall_s"],
        "median_step_time_s": median("step_time"), "median_tokens_per_s": median(tokens_key),
        **{f"median_{k.replace('/', '_')}_s": median(k) for k in breakdown},
        "peak_gpu_memory_gib": round(max(memory.values()), 3) if memory else None,
        "peak_process_rss_mib": run["peak_rss_mib"],
    }


def versions() -> dict:
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__}
    try:
        import deepspeed

        out["deepspeed"] = deepspeed.__version__
    except ImportError:
        out["deepspeed"] = None
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        out["device"] = f"CPU ({os.cpu_count()} cores)"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="dry run on the CPU: fp32, a tiny model, 2 steps per stage")
    p.add_argument("--model", help="check this model folder instead of building the ~24M Qwen2")
    p.add_argument("--steps", type=int, help="steps per stage (the first is warm-up)")
    p.add_argument("--out", help="result JSON (default benchmarks/results/gpu_check.json, gpu_check_cpu.json with --cpu)")
    p.add_argument("--workdir", help="keep the model, specs, logs and metrics here (default: a temporary folder)")
    args = p.parse_args(argv)
    mode = "cpu" if args.cpu else "gpu"
    why = preflight(args.cpu)
    if why:
        print(why, file=sys.stderr)
        return 2
    out_path = Path(args.out) if args.out else RESULTS / ("gpu_check_cpu.json" if args.cpu else "gpu_check.json")
    settings = SETTINGS[mode]
    steps = {"max_steps": args.steps} if args.steps else {}
    grpo_cfg = {**COMMON, **GRPO_COMMON, **settings["grpo"], **steps}
    sft_cfg = {**COMMON, **settings["sft"], **steps}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.model:
            model_dir, model_info = Path(args.model), {"path": args.model}
        else:
            model_dir = work / "model"
            model_info = build_model(model_dir, mode)
        prompts, chat = write_data(work)
        print(f"gpu-check ({mode}): {model_info}", flush=True)
        grpo = run_stage("grpo", model_dir, prompts, work, grpo_cfg)
        print(f"  grpo: exit {grpo['exit_code']} in {grpo['wall_s']} s", flush=True)
        sft = run_stage("sft", model_dir, chat, work, sft_cfg)
        print(f"  sft:  exit {sft['exit_code']} in {sft['wall_s']} s", flush=True)

    result = {
        "benchmark": "gpu_check", "mode": "gpu" if mode == "gpu" else "cpu dry run (fp32, tiny model)",
        "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(), "model": model_info,
        "grpo": {"setting": grpo_cfg, **summarize(grpo, tokens_key="throughput/tokens_per_s",
                                                  breakdown=("time/generate", "time/reference", "time/train"))},
        "sft": {"setting": sft_cfg, **summarize(sft, tokens_key="tokens_per_s")},
    }
    result["ok"] = grpo["exit_code"] == 0 and sft["exit_code"] == 0
    for name, run in (("grpo", grpo), ("sft", sft)):
        if run["exit_code"]:
            result[name]["log_tail"] = run["log_tail"]
            print(f"--- {name} failed (exit {run['exit_code']}); the end of its log:\n{run['log_tail']}", file=sys.stderr)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")

    print("\n| stage | steps (timed) | median step s | median tokens/s | peak GPU GiB | peak RSS MiB |\n|---|---|---|---|---|---|")
    for name in ("grpo", "sft"):
        r = result[name]
        print(f"| {name} | {r['steps']} ({r['timed_steps']}) | {r['median_step_time_s']} | {r['median_tokens_per_s']} "
              f"| {r['peak_gpu_memory_gib'] if r['peak_gpu_memory_gib'] is not None else '—'} | {r['peak_process_rss_mib']} |")
    print(f"{'ok' if result['ok'] else 'FAILED'}: {out_path}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
