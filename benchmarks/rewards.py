"""Accuracy-reward throughput vs plain math-verify, and whether their verdicts agree.

    .venv/bin/python benchmarks/rewards.py [--groups 128] [--reps 3] [--batch 64] [--latex-pcts 20,5]

The set mimics a GRPO step: prompts × G=8 completions, each group repeating a few distinct
answers. Prompt mix: 50% integer arithmetic (the tiny model's task), 15% decimal golds, 15%
fraction golds, 20% LaTeX golds from math-verify's own test cases (../shared/peer-cases); in
each group some completions are right in various forms and some wrong.

Timed (median of --reps; the four modes interleaved rep by rep, so that load from other
processes on the host falls on all of them alike):
- math-verify: `parse(gold)`, `parse(answer)`, `verify(...)` per completion, on the same
  prepared strings as ours (`prepare`: bare LaTeX wrapped in `$…$`), its lru caches and
  sympy's memo cleared before each repetition;
- ours, no reuse: item by item, verdict and parse caches cleared before every item (the fast
  path and one worker only: every answer new);
- ours, cold cache: verdict, parse and sympy caches empty at the start (in the workers too),
  batches of 64 (8 groups: the trainer's default step) as a trainer calls it; reuse comes only
  from repeats inside the pass (G completions repeat answers). The realistic figure, and the
  one the 10x goal is about;
- ours, warm cache: the same pass again (a second epoch); an upper bound, not a claim.
Before the timed reps both sides run a burn-in set once (untimed): same kinds, other numbers,
the other half of the peer cases. A trainer's process is past its first parses: ANTLR has built
its prediction DFA (the first few dozen parses in a process cost several times the later ones)
and sympy has set itself up; without a burn-in the first repetition measures that instead.
None of the timed strings is in the burn-in. Worker start-up (importing sympy, ~1-2 s per worker
on a quiet host, once per process; `warm_up()` also waits for the parser warm-up) is measured
apart. Verdicts are compared with math-verify on the prepared strings (must agree) and with
plain math-verify on the raw strings (listed: where bare LaTeX defeats it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from math_verify import parse, verify  # noqa: E402
from math_verify import parser as mv_parser  # noqa: E402
from sympy.core.cache import clear_cache as clear_sympy_cache  # noqa: E402

from training_backend.rewards import accuracy as acc  # noqa: E402
from training_backend.rewards import math_pool  # noqa: E402
from training_backend.rewards import extract_answer  # noqa: E402
from training_backend.rewards.math_equivalence import prepare  # noqa: E402

PEER_CASES = ROOT / ".." / "shared" / "peer-cases" / "math_verify_cases.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "rewards.json"
G = 8
BATCH = 64


def build_set(groups: int, latex_pct: int, seed: int = 0, half: int = 0) -> list[tuple[str, str]]:
    """(completion, gold) rows, G per prompt; LaTeX from the even (half=0) or odd (1) peer cases."""
    rng = random.Random(seed)
    peers = [json.loads(line) for line in PEER_CASES.read_text().splitlines() if line.strip()][half::2]
    right = [p for p in peers if p["expected"] == 1]
    rows: list[tuple[str, str]] = []
    for _ in range(groups):
        numbers = 100 - latex_pct  # split 50:15:15 between integers, decimals and fractions
        kind = rng.choices(
            ["int", "decimal", "fraction", "latex"], weights=[numbers * 50 / 80, numbers * 15 / 80, numbers * 15 / 80, latex_pct]
        )[0]
        if kind == "int":
            a, b = rng.randint(10, 999), rng.randint(10, 999)
            gold = str(a + b)
            good = [gold, gold, gold, f"\\boxed{{{gold}}}"]
            bad = [str(a + b + d) for d in (-10, -1, 1, 10, 100)]
        elif kind == "decimal":
            n = rng.randint(1, 99)
            gold = f"{n / 4}"
            good = [gold, f"{n}/4", f"\\frac{{{n}}}{{4}}", f"{n / 4:.2f}"]
            bad = [f"{n / 4 + 0.1:.2f}", f"{n}/5", str(n)]
        elif kind == "fraction":
            n, d = rng.randint(1, 30), rng.choice([3, 7, 9, 11])
            gold = f"\\frac{{{n}}}{{{d}}}"
            good = [f"{n}/{d}", gold, f"\\dfrac{{{n}}}{{{d}}}", f"{n / d:.6f}"]
            bad = [f"{d}/{n}", f"{n / d:.2f}", f"\\frac{{{n + 1}}}{{{d}}}"]
        else:
            case = rng.choice(right)
            gold = case["gold"]
            good = [case["pred"]]
            bad = [rng.choice(peers)["pred"] for _ in range(3)]
        # A group settles on a few distinct answers; most often the majority one.
        distinct = rng.sample(good, k=min(len(good), rng.randint(1, 2))) + rng.sample(bad, k=rng.randint(0, 2))
        weights = [4 if i == 0 else 1 for i in range(len(distinct))]
        for answer in rng.choices(distinct, weights=weights, k=G):
            rows.append((f"<think>let me work it out, wait, recheck</think> <answer>{answer}</answer>", gold))
    return rows


def math_verify_pass(rows: list[tuple[str, str]], *, prepared: bool) -> list[bool]:
    out = []
    for completion, gold in rows:
        answer = extract_answer(completion) or ""
        g, a = (prepare(gold), prepare(answer)) if prepared else (gold, answer)
        out.append(bool(verify(parse(g, parsing_timeout=None), parse(a, parsing_timeout=None), timeout_seconds=None)))
    return out


def clear_math_verify_caches() -> None:
    mv_parser.parse_latex_cached.cache_clear()
    mv_parser.parse_expr_cached.cache_clear()
    clear_sympy_cache()  # sympy memoises results too: "cold" means none of these strings' work kept


def ours_batched(rows: list[tuple[str, str]]) -> list[bool]:
    out: list[bool] = []
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        out += [r == 1.0 for r in acc.accuracy_rewards([c for c, _ in chunk], gold=[g for _, g in chunk])]
    return out


def ours_no_reuse(rows: list[tuple[str, str]]) -> list[bool]:
    out = []
    for completion, gold in rows:
        acc.clear_caches()
        out.append(acc.accuracy_reward(completion, gold) == 1.0)
    return out


def timed(fn, reps: int, before=None) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(reps):
        if before:
            before()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def run_mix(args: argparse.Namespace, latex_pct: int, startup_s: float) -> dict:
    rows = build_set(args.groups, latex_pct)
    # Burn-in, untimed: both sides see a set of the same kind (other numbers, the other half of
    # the peer cases) once, as a trainer's process has seen earlier steps: ANTLR's prediction DFA
    # and sympy's lazy set-up are warm, while none of the timed strings has been parsed before.
    burn_in = build_set(args.groups, latex_pct, seed=1, half=1)
    math_verify_pass(burn_in, prepared=True)
    ours_batched(burn_in)
    n = len(rows)
    unique_pairs = len({(g, extract_answer(c)) for c, g in rows})

    # A/B interleaved, rep by rep, so that a burst of load on the host hits both sides alike.
    times: dict[str, list[float]] = {"mv": [], "nr": [], "cold": [], "warm": []}
    results: dict[str, object] = {}
    modes = [
        ("mv", lambda: math_verify_pass(rows, prepared=True), clear_math_verify_caches),
        ("cold", lambda: ours_batched(rows), acc.clear_caches),
        ("warm", lambda: ours_batched(rows), None),  # right after cold: the second epoch
        ("nr", lambda: ours_no_reuse(rows), None),
    ]
    for _ in range(args.reps):
        for name, fn, before in modes:
            _, (t,), results[name] = timed(fn, 1, before)
            times[name].append(t)
    mv_s, mv_times, mv_verdicts = statistics.median(times["mv"]), times["mv"], results["mv"]
    nr_s, nr_times, nr_verdicts = statistics.median(times["nr"]), times["nr"], results["nr"]
    cold_s, cold_times, cold_verdicts = statistics.median(times["cold"]), times["cold"], results["cold"]
    warm_s, warm_times, warm_verdicts = statistics.median(times["warm"]), times["warm"], results["warm"]
    raw_verdicts = math_verify_pass(rows, prepared=False)

    def disagreements(theirs: list[bool], ours: list[bool]) -> list[dict]:
        seen, out = set(), []
        for (completion, gold), t, o in zip(rows, theirs, ours):
            key = (gold, extract_answer(completion))
            if t != o and key not in seen:
                seen.add(key)
                out.append({"gold": gold, "answer": key[1], "math_verify": t, "ours": o})
        return out

    vs_prepared = disagreements(mv_verdicts, cold_verdicts)
    assert nr_verdicts == cold_verdicts == warm_verdicts, "our three modes disagree among themselves"
    vs_raw = disagreements(raw_verdicts, cold_verdicts)

    result = {
        "set": {"completions": n, "groups": args.groups, "G": G, "unique_gold_answer_pairs": unique_pairs},
        "worker_startup_s": round(startup_s, 3),
        "seconds_median": {
            "math_verify": round(mv_s, 3),
            "ours_no_reuse": round(nr_s, 3),
            "ours_cold_cache": round(cold_s, 3),
            "ours_warm_cache": round(warm_s, 3),
        },
        "seconds_all_reps": {
            "math_verify": [round(t, 3) for t in mv_times],
            "ours_no_reuse": [round(t, 3) for t in nr_times],
            "ours_cold_cache": [round(t, 3) for t in cold_times],
            "ours_warm_cache": [round(t, 3) for t in warm_times],
        },
        "completions_per_s": {
            "math_verify": round(n / mv_s, 1),
            "ours_no_reuse": round(n / nr_s, 1),
            "ours_cold_cache": round(n / cold_s, 1),
            "ours_warm_cache": round(n / warm_s, 1),
        },
        "cold_cache_speedup_per_rep": [round(m / c, 1) for m, c in zip(mv_times, cold_times)],
        "speedup_vs_math_verify": {
            "no_reuse": round(mv_s / nr_s, 1),
            "cold_cache": round(mv_s / cold_s, 1),
            "warm_cache": round(mv_s / warm_s, 1),
        },
        "disagreements_vs_math_verify_prepared": {"count": len(vs_prepared), "cases": vs_prepared},
        "disagreements_vs_math_verify_raw_strings": {"count": len(vs_raw), "cases": vs_raw},
    }
    result["set"]["latex_pct"] = latex_pct
    result["set"]["batch"] = BATCH
    print(f"\n{latex_pct}% LaTeX prompts: {n} completions ({args.groups} groups x G={G}), {unique_pairs} unique "
          f"(gold, answer) pairs; {math_pool.math_workers()} sympy workers on {os.cpu_count()} CPUs; "
          f"worker start-up {startup_s:.2f} s (not timed)")
    print(f"{'':34}{'median s':>10}{'compl/s':>10}{'speedup':>9}")
    for label, key in [
        ("math-verify parse+verify", "math_verify"),
        ("ours, no reuse (item by item)", "ours_no_reuse"),
        ("ours, cold cache (realistic)", "ours_cold_cache"),
        ("ours, warm cache (2nd epoch)", "ours_warm_cache"),
    ]:
        s = result["seconds_median"][key]
        speed = "" if key == "math_verify" else f"{mv_s / s:8.1f}x"
        print(f"{label:34}{s:10.3f}{n / s:10.1f}{speed:>9}")
    print(f"cold cache vs math-verify, rep by rep: {result['cold_cache_speedup_per_rep']}; "
          f"load (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"disagreements with math-verify (prepared strings): {len(vs_prepared)}")
    print(f"disagreements with math-verify on raw strings: {len(vs_raw)}")
    for d in vs_raw:
        print(f"  gold={d['gold'][:50]!r} answer={str(d['answer'])[:50]!r} raw math-verify={d['math_verify']} ours={d['ours']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=128, help="prompts; each has G=8 completions")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--latex-pcts", default="20,5", help="share of prompts with LaTeX golds, one run each")
    ap.add_argument("--batch", type=int, default=BATCH, help="completions per reward call (a trainer step)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    globals()["BATCH"] = args.batch
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its 'timeout disabled' warning

    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    math_pool.warm_up()
    startup_s = time.perf_counter() - started
    runs = {f"latex_{pct}pct": run_mix(args, int(pct), startup_s) for pct in args.latex_pcts.split(",")}
    result = {
        "command": "python benchmarks/rewards.py " + " ".join(sys.argv[1:]),
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": load_at_start,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "math_workers": math_pool.math_workers(),
        },
        "worker_startup_s": round(startup_s, 3),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
