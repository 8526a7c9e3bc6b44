"""How fast can generation get on the tiny model's GRPO step? The budget the 0.5x-of-TRL goal
leaves it, against what decoding costs here, eager and compiled.

    .venv/bin/python benchmarks/decode_floor.py [--threads 1] [--steps-file benchmarks/results/grpo_step.json]

The shape is grpo_step.py's tiny setting: 64 rows (8 prompts x G=8) decoding 48 new tokens after
a 24-token prompt, one torch thread, fp32, a static KV cache of prompt + 48 (what our engine uses).
Timed, alternated eager / compiled for 3 rounds, medians:
- eager: one decode step through the transformers forward (what HFGenerateEngine runs);
- compiled: the same step under `torch.compile` (inductor, static shapes; compile time reported
  apart): the best a generic forward gets here without hand-written kernels.
Then, from grpo_step.json's medians (the same machine, on a quiet host): TRL's step time, our
reference + reward + train times, and so the time left to generation if our step is to be 0.5x
TRL's; and the arithmetic of one decode step (2 x parameters x rows, plus attention over the
cache) at the rate our own training pass reaches (its forward + backward FLOPs over its time):
the floor for an overhead-free decode. Writes benchmarks/results/decode_floor.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps-file", default=str(RESULTS / "grpo_step.json"))
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import StaticCache

    from training_backend import tiny

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = tiny.build_model(seed=0)
    model.eval()
    N, P, T = 64, 24, 48
    L = P + T
    ids = torch.randint(5, 30, (N, P))
    mask = torch.ones(N, L, dtype=torch.long)

    def prefill() -> StaticCache:
        cache = StaticCache(config=model.config, max_cache_len=L)
        model(input_ids=ids, attention_mask=mask[:, :P], position_ids=torch.arange(P)[None].expand(N, P),
              past_key_values=cache, use_cache=True, cache_position=torch.arange(P))
        return cache

    def step(cache, nxt, pos, cpos):
        return model(input_ids=nxt, attention_mask=mask, position_ids=pos, past_key_values=cache,
                     use_cache=True, cache_position=cpos).logits[:, -1]

    compiled = torch.compile(step, dynamic=False)
    nxt = torch.randint(5, 30, (N, 1))
    per_token = {"eager": [], "compiled": []}
    compile_s = None
    with torch.no_grad():
        for rnd in range(4):
            for name, f in (("eager", step), ("compiled", compiled)):
                cache = prefill()
                t0 = time.perf_counter()
                out = [f(cache, nxt, torch.full((N, 1), P + i), torch.tensor([P + i])) for i in range(T - 1)]
                elapsed = time.perf_counter() - t0
                if rnd == 0:  # warm-up; the compiled one compiles here
                    if name == "compiled":
                        compile_s = elapsed
                        diff = max(float((a - b).abs().max()) for a, b in zip(ref, out))
                    else:
                        ref = out
                    continue
                per_token[name].append(elapsed / (T - 1) * 1000)
    med = {k: statistics.median(v) for k, v in per_token.items()}

    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    attn_flops = 2 * 2 * L * cfg.hidden_size * cfg.num_hidden_layers  # QK^T and PV over the cache, per row
    step_gflop = N * (2 * n_params + attn_flops) / 1e9
    budget = None
    steps_file = Path(args.steps_file)
    if steps_file.exists():
        g = json.loads(steps_file.read_text())
        ours, trl = g["ours_median"], g["trl_median"]
        rest = ours["step_time"] - ours["generate"]  # reference + reward + train + bookkeeping
        train_tokens = 8 * g["setting"]["mean_prompt_tokens"] + 64 * g["setting"]["max_new_tokens"]  # prompts shared per group
        train_gflop = 3 * 2 * n_params * train_tokens / 1e9  # forward + backward
        rate = train_gflop / ours["train"]
        floor_s = (T * step_gflop) / rate
        budget = {
            "trl_step_s": trl["step_time"], "ours_step_s": ours["step_time"], "ours_generate_s": ours["generate"],
            "ours_without_generate_s": rest, "goal_step_s": 0.5 * trl["step_time"],
            "generation_budget_s": 0.5 * trl["step_time"] - rest,
            "train_gflop_per_step": train_gflop, "train_gflops_achieved": rate,
            "decode_gflop_per_token": step_gflop,
            "decode_floor_at_train_rate_s": floor_s,
            "eager_decode_s": T * med["eager"] / 1000, "compiled_decode_s": T * med["compiled"] / 1000,
        }
    print(f"decode step, {N} rows, cache {L}: eager {med['eager']:.2f} ms, compiled {med['compiled']:.2f} ms "
          f"(compile {compile_s:.1f} s, max |logit diff| {diff:.1e}); {step_gflop * 1000:.0f} MFLOP a step")
    if budget:
        print(f"0.5x TRL = {budget['goal_step_s']:.3f} s a step; ours without generation {budget['ours_without_generate_s']:.3f} s "
              f"-> generation must take <= {budget['generation_budget_s']:.3f} s for {T} tokens")
        print(f"training reaches {budget['train_gflops_achieved']:.0f} GFLOP/s; {T} decode steps at that rate: "
              f"{budget['decode_floor_at_train_rate_s']:.3f} s; eager {budget['eager_decode_s']:.3f} s, "
              f"compiled {budget['compiled_decode_s']:.3f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "decode_floor.json").write_text(json.dumps({
        "benchmark": "decode_floor", "command": "python benchmarks/decode_floor.py",
        "shape": {"rows": N, "prompt": P, "new_tokens": T, "threads": args.threads, "parameters": n_params},
        "per_token_ms": per_token, "median_per_token_ms": med, "compile_s": compile_s, "max_logit_diff": diff,
        "budget": budget, "load_average_1_5_15_min": os.getloadavg(),
        "versions": {"torch": torch.__version__},
    }, indent=2))


if __name__ == "__main__":
    main()
