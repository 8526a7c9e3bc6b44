"""The miniature DeepSeek-R1 pipeline on the tiny model, end to end on a CPU, each stage a real
`python -m training_backend run SPEC.json` fed by the previous stage's outputs.json:

    eval(base) -> 1 cold-start SFT (curated long CoT) -> eval -> 2 reasoning GRPO (accuracy + format + language)
    -> 3 rejection sampling from 2 (+ general data) -> SFT of the base on that set
    -> reward model (preference pairs on the general prompts)
    -> 4 all-scenario GRPO (rule rewards for math, the reward model for general prompts)
    -> eval after stages 1 and 2 and at the end: pass@1 over k samples, cons@k, on held-out additions

    .venv/bin/python benchmarks/r1_pipeline.py [--out var/r1/pipeline] [--base var/r1/tiny-base] [--threads 2] [--tag T]

Prints a table and writes benchmarks/results/r1_pipeline.json. The world is tiny.py's
(additions, char-level ~1M-parameter Llama); the "general" prompts are `say <word>` with the
answer `<word>`: a non-reasoning task that only the reward model scores. Sizes are chosen so
that the whole run fits in ~20 minutes on 2 shared CPU cores; with so few eval prompts the
before/after numbers carry a few points of sampling noise (the JSON has the counts).
A stage whose SPEC.json is unchanged in --out is reused, not rerun (its wall time is the first run's).

What the runs show (benchmarks/results/r1_pipeline*.json): the stages work and chain (each
one's own metrics move as they should: SFT loss, format reward, funnel, reward-model accuracy),
but the tiny world is being redesigned while this was written, and a base only fits cold-start
rows drawn from the same version of tiny.py. r1_pipeline.json (500-step base of the 3-digit
world, evaluated on the 2-digit prompts of a later one) and r1_pipeline-base800.json (800-step
base whose traces read `92+84: 2+4=...` while the cold-start rows read `92+84 is g? wait, let me
recheck: ...`) show what a style mismatch does: cold-start SFT teaches a hybrid trace, pass@1
falls (0.375 -> ~0.01 after stages 1-2 on the 800-step base), rejection sampling keeps 1-2 rows.
Make the base with the same tiny.py as the data (`make-base`, then this script) before reading
the numbers as R1's recipe at work. r1_pipeline-current-world.json does (base made by `make-base`
at commit 7fe564b): pass@1 0.297 -> 0.797 after cold start -> 0.844 after reasoning GRPO; the
final model (stage 3 re-starts from the base, as R1 does, on only 78 rows for 10 steps) is at
0.508: the miniature's stage-3 set is too small to carry stage 2's gains, R1's was 800k rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training_backend import tiny  # noqa: E402

N_COLD, N_GRPO, N_RS, N_EVAL, N_GENERAL = 192, 256, 32, 32, 96
K_EVAL = 4


def curated_cot(a: int, b: int, rng: random.Random) -> str:
    """A curated cold-start example: drawn from the tiny world's own corpus (tiny.completion_for, so
    it is in the base's trace style whatever tiny.py's current world is) and kept only when it is a
    correct, reflective long CoT, as an annotator would pick; else any correct think trace."""
    fallback = None
    for _ in range(400):
        c = tiny.completion_for(a, b, rng).strip()
        if "<think>" not in c or f"<answer> {a + b} </answer>" not in c:
            continue
        if tiny.RECHECK.strip() in c:
            return c
        fallback = fallback or c
    return fallback or f"<think> {a}+{b} </think> <answer> {a + b} </answer>"


def general_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = {"".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 5))) for _ in range(n * 2)}
    return [{"id": f"say-{w}", "prompt": f"say {w}", "word": w, "type": "general"} for w in sorted(words)[:n]]


def say_answer(word: str) -> str:
    return f"<think> say it back </think> <answer> {word} </answer>"


def preference_pairs(rows: list[dict], seed: int) -> list[dict]:
    """chosen: the word said back in the format; rejected: another word, or the word out of format."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        w = r["word"]
        other = w[::-1] if w[::-1] != w else w + "x"
        rejected = say_answer(other) if rng.random() < 0.5 else f"<answer> {w}{w} </answer>"
        out.append({"prompt": r["prompt"], "chosen": say_answer(w), "rejected": rejected})
    return out


def run_stage(name: str, spec: dict, out: Path, log) -> tuple[dict, float]:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "output_dir": str(d)}
    text = json.dumps(spec, indent=2)
    # reuse a stage only when its spec, its data files and its model's weights are all unchanged
    key = json.dumps([text] + [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in
                               (spec["train_data"], spec.get("eval_data"), Path(spec["model_path"]) / "model.safetensors")
                               if f and Path(f).is_file()])
    prev = d / "outputs.json"
    if prev.exists() and (d / "key.json").exists() and (d / "key.json").read_text() == key \
            and json.loads(prev.read_text())["status"] == "succeeded":
        log(f"{name:<22} reused {prev}")
        return json.loads(prev.read_text()), json.loads((d / "wall_s.json").read_text())["wall_s"]
    (d / "SPEC.json").write_text(text)
    t0 = time.perf_counter()
    with open(d / "stage.log", "w") as f:
        rc = subprocess.call([sys.executable, "-m", "training_backend", "run", str(d / "SPEC.json")], cwd=ROOT,
                             stdout=f, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"stage {name} exited {rc}; see {d / 'stage.log'}")
    outputs = json.loads((d / "outputs.json").read_text())
    (d / "wall_s.json").write_text(json.dumps({"wall_s": dt}))
    (d / "key.json").write_text(key)
    log(f"{name:<22} {dt:6.0f}s  {outputs['status']}")
    return outputs, dt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="var/r1/pipeline")
    p.add_argument("--base", default="var/r1/tiny-base")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="results go to benchmarks/results/r1_pipeline[-TAG].json")
    args = p.parse_args()
    out, base = (ROOT / args.out).resolve(), (ROOT / args.base).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, flush=True)  # noqa: E731
    t_all = time.perf_counter()
    if not (base / "config.json").exists():
        log(f"no base model at {base}: pretraining one (make-base, ~5-20 min)")
        subprocess.check_call([sys.executable, "-m", "training_backend", "make-base", str(base), "--threads", str(args.threads)], cwd=ROOT)

    # --- data: disjoint slices of the demo prompts (all held out of the base's pretraining corpus)
    train, held = tiny.demo_splits()
    rng = random.Random(args.seed)
    cold = train[:N_COLD]
    grpo_math = train[N_COLD:N_COLD + N_GRPO]
    rs_prompts = train[N_COLD + N_GRPO:N_COLD + N_GRPO + N_RS]
    eval_rows = held[:N_EVAL]
    general = general_rows(N_GENERAL * 2, seed=args.seed + 7)
    general_sft, general_rl = general[:N_GENERAL], general[N_GENERAL:]
    data = out / "data"
    tiny.write_jsonl([{"id": r["id"], "answer": r["answer"], "messages": [
        {"role": "user", "content": r["prompt"]},
        {"role": "assistant", "content": curated_cot(*map(int, r["prompt"].split("+")), rng)}]} for r in cold],
        data / "cold_start.jsonl")
    tiny.write_jsonl(grpo_math, data / "grpo_math.jsonl")
    tiny.write_jsonl(rs_prompts, data / "rs_prompts.jsonl")
    tiny.write_jsonl(eval_rows, data / "eval.jsonl")
    tiny.write_jsonl([{"id": r["id"], "type": "general", "messages": [
        {"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": say_answer(r["word"])}]}
        for r in general_sft], data / "general.jsonl")
    tiny.write_jsonl(preference_pairs(general_sft, args.seed), data / "preferences.jsonl")
    tiny.write_jsonl(preference_pairs(general_rl, args.seed + 1), data / "preferences_eval.jsonl")
    mixed = grpo_math[:128] + [{k: v for k, v in r.items() if k != "word"} for r in general_rl]
    random.Random(args.seed).shuffle(mixed)
    tiny.write_jsonl(mixed, data / "all_scenario.jsonl")

    T = {"torch_threads": args.threads}
    EVAL = {"num_samples": K_EVAL, "max_new_tokens": 112, "max_prompt_length": 32, "prompts_per_batch": 16, **T}
    # lr 1e-4 and a format weight of 0.25, as the R1-Zero demo found: with equal weights the format
    # reward reinforces well-formed wrong traces on this tiny model
    GRPO = {"num_generations": 8, "batch_size": 32, "learning_rate": 1e-4, "beta": 0.0, "loss_type": "dapo",
            "max_completion_length": 112, "max_prompt_length": 32, "temperature": 1.0, "engine": "torch",
            "save_steps": 100, "save_total_limit": 1, "log_samples": 8, **T}

    def spec(kind, model, train_data, eval_data=None, **config):
        return {"kind": kind, "model_path": str(model), "output_dir": "", "train_data": str(train_data),
                "eval_data": str(eval_data) if eval_data else None, "seed": args.seed, "config": config}

    stages: dict[str, dict] = {}
    times: dict[str, float] = {}

    def stage(name, s):
        stages[name], times[name] = run_stage(name, s, out, log)
        return stages[name]

    e0 = stage("eval_base", spec("eval", base, data / "eval.jsonl", **EVAL))
    sft1 = stage("1_cold_start_sft", spec("sft", base, data / "cold_start.jsonl", num_epochs=2, batch_size=16,
                                          learning_rate=2e-4, warmup_steps=2, max_seq_length=160, engine="torch",
                                          eval_num_samples=0, save_steps=1000, **T))
    e1 = stage("eval_after_cold_start", spec("eval", sft1["final_model"], data / "eval.jsonl", **EVAL))
    g2 = stage("2_reasoning_grpo", spec("grpo", sft1["final_model"], data / "grpo_math.jsonl", max_steps=6,
                                        reward_funcs=["accuracy", "format", "language_consistency"],
                                        reward_weights=[1.0, 0.25, 0.25], **GRPO))
    e2 = stage("eval_after_grpo", spec("eval", g2["final_model"], data / "eval.jsonl", **EVAL))
    rs = stage("3_rejection_sampling", spec("rejection_sampling", g2["final_model"], data / "rs_prompts.jsonl",
                                            num_samples=6, temperature=1.0, top_p=0.95, max_new_tokens=112,
                                            max_prompt_length=32, prompts_per_batch=16, keep_per_prompt=2,
                                            general_data=str(data / "general.jsonl"), general_ratio=0.5, **T))
    sft3 = stage("3_sft_on_rs_plus_general", spec("sft", base, rs["dataset"], num_epochs=2, batch_size=16,
                                                  learning_rate=2e-4, warmup_steps=2, max_seq_length=160,
                                                  engine="torch", eval_num_samples=0, save_steps=1000, **T))
    rm = stage("reward_model", spec("reward_model", base, data / "preferences.jsonl", data / "preferences_eval.jsonl",
                                    num_epochs=4, batch_size=16, learning_rate=1e-3, max_seq_length=64,
                                    engine="torch", save_steps=1000, **T))
    g4 = stage("4_all_scenario_grpo", spec("grpo", sft3["final_model"], data / "all_scenario.jsonl", max_steps=4,
                                           reward_funcs=["accuracy", "format", "reward_model"], reward_weights=[1.0, 0.25, 1.0],
                                           reward_model_path=rm["final_model"], reward_model_types=["general"], **GRPO))
    e4 = stage("eval_final", spec("eval", g4["final_model"], data / "eval.jsonl", **EVAL))

    def ev(o):
        s = o["summary"]
        return {k: round(s[f"eval/{k}"], 4) for k in ("pass@1", "cons@k", "pass@k", "mean_length", "reflection/frac_responses")}

    def grpo_summary(name):
        rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if '"key"' in x]
        series = {}
        for r in rows:
            series.setdefault(r["key"], []).append(r["value"])
        keys = ("reward", "rewards/accuracy/mean", "rewards/format/mean", "rewards/reward_model/mean", "completions/mean_length")
        return {k: {"first": round(series[k][0], 4), "last": round(series[k][-1], 4)} for k in keys
                if k in series and series[k][0] is not None and series[k][-1] is not None}

    funnel = json.loads(Path(rs["funnel"]).read_text())
    result = {
        "command": f".venv/bin/python benchmarks/r1_pipeline.py --out {args.out} --base {args.base} --threads {args.threads}"
                   + (f" --tag {args.tag}" if args.tag else ""),
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "python": platform.python_version(),
                    "note": "2 CPU cores shared with other jobs; wall times are noisy"},
        "eval": {"prompts": N_EVAL, "k": K_EVAL, "temperature": 0.6, "top_p": 0.95,
                 "base": ev(e0), "after_cold_start_sft": ev(e1), "after_reasoning_grpo": ev(e2), "final": ev(e4)},
        "stages": {
            "1_cold_start_sft": {"rows": N_COLD, "steps": sft1["step"], "first_loss_last_loss": _first_last(out / "1_cold_start_sft", "loss")},
            "2_reasoning_grpo": {"steps": g2["step"], **grpo_summary("2_reasoning_grpo")},
            "3_rejection_sampling": {k: funnel[k] for k in ("sampled", "removed", "remaining", "kept", "prompts_with_kept",
                                                             "general_rows", "total_rows")},
            "3_sft_on_rs_plus_general": {"rows": rs["num_rows"], "steps": sft3["step"],
                                         "first_loss_last_loss": _first_last(out / "3_sft_on_rs_plus_general", "loss")},
            "reward_model": {"pairs": N_GENERAL, "steps": rm["step"], "eval/accuracy": round(rm["summary"]["eval/accuracy"], 4),
                             "eval/loss": round(rm["summary"]["eval/loss"], 4)},
            "4_all_scenario_grpo": {"steps": g4["step"], **grpo_summary("4_all_scenario_grpo")},
        },
        "wall_s": {k: round(v, 1) for k, v in times.items()} | {"total": round(time.perf_counter() - t_all, 1)},
    }
    print("\n| model | pass@1 | cons@%d | mean length | reflecting |\n|---|---|---|---|---|" % K_EVAL)
    for name, key in (("base", "base"), ("after stage 1 (cold-start SFT)", "after_cold_start_sft"),
                      ("after stage 2 (reasoning GRPO)", "after_reasoning_grpo"), ("final (stage 4)", "final")):
        e = result["eval"][key]
        print(f"| {name} | {e['pass@1']:.3f} | {e['cons@k']:.3f} | {e['mean_length']:.1f} | {e['reflection/frac_responses']:.2f} |")
    print(f"\nfunnel: sampled {funnel['sampled']} -> " + " -> ".join(f"{k} {v}" for k, v in funnel["remaining"].items())
          + f"; + {funnel['general_rows']} general rows")
    print(f"reward model held-out pairwise accuracy {result['stages']['reward_model']['eval/accuracy']:.3f}")
    dest = ROOT / "benchmarks" / "results" / f"r1_pipeline{'-' + args.tag if args.tag else ''}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest.relative_to(ROOT)} ({result['wall_s']['total']:.0f}s)")
    return 0


def _first_last(stage_dir: Path, key: str) -> list[float]:
    vals = [json.loads(x)["value"] for x in (stage_dir / "metrics.jsonl").read_text().splitlines() if f'"key": "{key}"' in x]
    return [round(vals[0], 4), round(vals[-1], 4)]


if __name__ == "__main__":
    sys.exit(main())
