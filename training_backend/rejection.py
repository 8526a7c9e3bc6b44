"""Rejection sampling (DeepSeek-R1 stage 3's reasoning data): sample, score, filter, dedupe, write.

    for each batch of prompts:  n completions per prompt from the checkpoint (temperature, top-p)
                                -> every reward of the stage, plus format / correctness / language
    then over all candidates, in this order, counting what each filter removes (the funnel):
        format       parses as <think>…</think><answer>…</answer> (rewards.format_reward == 1)
        correct      accuracy == 1 against the row's answer, or code == 1 for rows with tests
        language     language consistency of the CoT ≥ min_language_consistency
        readability  no ``` code block in the CoT, no paragraph longer than max_paragraph_chars
        reward       total reward (reward_funcs, weighted) ≥ min_reward
        dedupe       CoT word-n-gram Jaccard to an already kept sample of the prompt < dedupe_threshold
                     (candidates are visited best first: highest total reward, then shortest)
        cap          at most keep_per_prompt per prompt
    -> chat JSONL (what sft.py reads) with provenance per row, general data mixed in at
       general_ratio, and the funnel as metrics and as funnel.json (the dashboard's funnel chart).

Where this departs from R1: R1 also used DeepSeek-V3 as a judge for answers that rules cannot
check, and filtered "chaotic" outputs that no rule names; here only rule checks exist, so rows
without an answer or tests never pass `correct`.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, field

from training_backend.config import RejectionSamplingConfig, StageSpec
from training_backend.stage import Out, StageShell, TrainResult, checkpoint_step

FILTERS = ("format", "correct", "language", "readability", "reward", "dedupe", "cap")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass
class Candidate:
    """One sampled completion of one prompt row, with everything the filters look at."""

    row: dict  # the prompt row: id, prompt, answer?, tests?, target_lang?, type?
    sample: int  # which of the prompt's n samples
    completion: str
    length: int = 0  # tokens
    truncated: bool = False
    rewards: dict[str, float | None] = field(default_factory=dict)  # reward_funcs' values
    reward: float = 0.0  # their weighted total
    checks: dict[str, float | None] = field(default_factory=dict)  # format, correct, language

    def to_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Scoring and filtering (pure: no model)


def score_candidates(cands: list[Candidate], cfg: RejectionSamplingConfig) -> None:
    """Fill `rewards`, `reward` and `checks` of each candidate in place."""
    from training_backend.rewards import REWARD_FUNCS, combine_rewards

    if not cands:
        return
    texts = [c.completion for c in cands]
    rows = [c.row for c in cands]
    columns = {"answer": [r.get("answer") for r in rows], "tests": [r.get("tests") for r in rows],
               "target_lang": [r.get("target_lang") or cfg.target_lang for r in rows],
               "completion_lengths": [c.length for c in cands], "prompts": [r["prompt"] for r in rows],
               "type": [r.get("type") for r in rows]}
    cache: dict[str, list[float | None]] = {}

    def reward(name: str) -> list[float | None]:
        if name not in cache:
            cache[name] = list(REWARD_FUNCS[name](texts, **columns))
        return cache[name]

    per_fn = {name: reward(name) for name in cfg.reward_funcs}
    totals = combine_rewards(per_fn, dict(zip(cfg.reward_funcs, cfg.reward_weights or [1.0] * len(cfg.reward_funcs))))
    fmt, acc, lang = reward("format"), reward("accuracy"), reward("language_consistency")
    code_idx = [i for i, r in enumerate(rows) if r.get("tests")]
    code = reward("code") if code_idx else [None] * len(cands)
    for i, c in enumerate(cands):
        c.rewards = {name: per_fn[name][i] for name in cfg.reward_funcs}
        c.reward = totals[i]
        c.checks = {"format": fmt[i], "correct": code[i] if c.row.get("tests") else acc[i], "language": lang[i]}


def readability_problem(completion: str, max_paragraph_chars: int, allow_code: bool) -> str | None:
    """Why the CoT is not readable by R1's rules (a code block, an over-long paragraph), or None."""
    from training_backend.rewards import extract_think

    think = extract_think(completion) or ""
    if not allow_code and "```" in think:
        return "code block in the CoT"
    longest = max((len(p.strip()) for p in _PARAGRAPH_BREAK.split(think)), default=0)
    if longest > max_paragraph_chars:
        return f"a CoT paragraph of {longest} characters"
    return None


def ngram_jaccard(a: str, b: str, n: int) -> float:
    """Jaccard similarity of the word n-gram sets (a text shorter than n words is one n-gram)."""
    def grams(s: str) -> set[tuple[str, ...]]:
        w = s.split()
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else {tuple(w)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb) if ga | gb else 1.0


def filter_candidates(cands: list[Candidate], cfg: RejectionSamplingConfig,
                      reasons: dict[tuple[str, int], str] | None = None) -> tuple[list[Candidate], dict]:
    """Apply FILTERS in order; (kept candidates, funnel). Candidates must be scored.

    `reasons`, when given, receives (prompt id, sample) -> the filter that removed that candidate
    (what removed.jsonl records, so a reviewer sees what each threshold throws away).

    funnel = {"sampled": N, "prompts": P, "removed": {filter: count}, "remaining": {filter: count
    left after it}, "kept": K, "prompts_with_kept": p}.
    """
    from training_backend.rewards import extract_think

    removed = {f: 0 for f in FILTERS}
    remaining: dict[str, int] = {}

    def apply(name: str, items: list[Candidate], keep) -> list[Candidate]:
        out = [c for c in items if keep(c)]
        removed[name] += len(items) - len(out)
        if reasons is not None:
            for c in items:
                if not keep(c):
                    reasons[(str(c.row["id"]), c.sample)] = name
        remaining[name] = len(out)
        return out

    left = apply("format", cands, lambda c: (c.checks.get("format") or 0.0) >= 1.0)
    left = apply("correct", left, lambda c: (c.checks.get("correct") or 0.0) >= 1.0)
    # The language reward is None when it does not apply (no target language): that passes.
    left = apply("language", left, lambda c: c.checks.get("language") is None
                 or c.checks["language"] >= cfg.min_language_consistency)
    left = apply("readability", left, lambda c: readability_problem(c.completion, cfg.max_paragraph_chars,
                                                                     cfg.allow_code_in_cot) is None)
    left = apply("reward", left, lambda c: c.reward >= cfg.min_reward)

    by_prompt: dict[str, list[Candidate]] = {}
    for c in left:
        by_prompt.setdefault(str(c.row["id"]), []).append(c)
    distinct, kept = [], []
    for group in by_prompt.values():
        chosen: list[Candidate] = []
        for c in sorted(group, key=lambda c: (-c.reward, c.length, c.sample)):
            cot = extract_think(c.completion) or c.completion
            if any(ngram_jaccard(cot, extract_think(k.completion) or k.completion, cfg.dedupe_ngram) >= cfg.dedupe_threshold
                   for k in chosen):
                removed["dedupe"] += 1
                if reasons is not None:
                    reasons[(str(c.row["id"]), c.sample)] = "dedupe"
                continue
            chosen.append(c)
        distinct += chosen
        removed["cap"] += max(0, len(chosen) - cfg.keep_per_prompt)
        if reasons is not None:
            for c in chosen[cfg.keep_per_prompt:]:
                reasons[(str(c.row["id"]), c.sample)] = "cap"
        kept += chosen[: cfg.keep_per_prompt]
    remaining["dedupe"] = len(distinct)
    remaining["cap"] = len(kept)
    funnel = {"sampled": len(cands), "prompts": len({str(c.row["id"]) for c in cands}), "removed": removed,
              "remaining": remaining, "kept": len(kept), "prompts_with_kept": len({str(c.row["id"]) for c in kept})}
    return kept, funnel


def funnel_metrics(funnel: dict) -> dict[str, float]:
    """The funnel as flat metrics: funnel/sampled, funnel/<filter> (left after it), funnel/removed/<filter>."""
    m = {"funnel/sampled": funnel["sampled"], "funnel/kept": funnel["kept"],
         "funnel/prompts_with_kept": funnel["prompts_with_kept"],
         "funnel/acceptance_rate": funnel["kept"] / funnel["sampled"] if funnel["sampled"] else math.nan}
    for f in FILTERS:
        m[f"funnel/{f}"] = funnel["remaining"][f]
        m[f"funnel/removed/{f}"] = funnel["removed"][f]
    return {k: float(v) for k, v in m.items()}


def to_chat_row(c: Candidate, checkpoint: str, checkpoint_step: int | None, seed: int) -> dict:
    """A kept candidate as an SFT row: chat messages, the gold, and where it came from."""
    row = {"messages": [{"role": "user", "content": c.row["prompt"]},
                        {"role": "assistant", "content": c.completion.strip()}],
           "id": f"{c.row['id']}#s{c.sample}", "source": "rejection_sampling",
           "provenance": {"prompt_id": c.row["id"], "checkpoint": checkpoint, "step": checkpoint_step,
                          "sample": c.sample, "seed": seed, "rewards": c.rewards, "reward": c.reward,
                          "length": c.length}}
    for key in ("answer", "type", "target_lang"):
        if c.row.get(key) is not None:
            row[key] = c.row[key]
    return row


def mix_general(rows: list[dict], general: list[dict], ratio: float, seed: int, path: str) -> tuple[list[dict], int]:
    """rows + round(ratio · len(rows)) general rows (seeded choice, capped by the file), shuffled."""
    rng = random.Random(seed)
    n = min(len(general), round(ratio * len(rows)))
    picked = rng.sample(general, n)
    extra = [{**{k: v for k, v in g.items() if k != "_line"}, "source": g.get("source", "general"),
              "provenance": {"file": path, "line": g["_line"]}} for g in picked]
    out = rows + extra
    rng.shuffle(out)
    return out, n


# ------------------------------------------------------------------------------------------------
# The stage


def train(spec: StageSpec, reporter, *, resume: bool = False, template: str | None = None, progress=print,
          handle_sigterm: bool = True, metrics_path: str | None = None) -> TrainResult:
    """Run a `rejection_sampling` stage. Outputs: dataset.jsonl, funnel.json, candidates.jsonl
    (every scored sample, for audit) in output_dir."""
    with StageShell(spec, reporter, kind="rejection_sampling", resume=resume, progress=progress,
                    handle_sigterm=handle_sigterm, metrics_path=metrics_path) as shell:
        return _train(spec, reporter, shell, template, resume)


def _train(spec: StageSpec, reporter, shell: StageShell, template: str | None, resume: bool) -> TrainResult:
    import torch

    from training_backend.data import read_chat_jsonl, read_prompt_jsonl, write_jsonl
    from training_backend.rewards.sandbox import code_sandbox_for_rows
    from training_backend.rollout import HFGenerateEngine
    from training_backend.models import load_model_and_tokenizer, prompt_renderer, stop_token_ids, text_codec

    cfg: RejectionSamplingConfig = spec.config
    rows = read_prompt_jsonl(spec.train_data)
    if cfg.max_prompts:
        rows = rows[: cfg.max_prompts]
    general = read_chat_jsonl(cfg.general_data) if cfg.general_data and cfg.general_ratio > 0 else []
    code_sandbox = code_sandbox_for_rows(rows, cfg.allow_unsandboxed_code)  # refused (exit 2) before a model loads
    out_dir = shell.out_dir
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    model, tok = load_model_and_tokenizer(spec.model_path)
    model.eval()
    render = prompt_renderer(tok, template, cfg.prompt_format, cfg.system_prompt, cfg.prompt_template)
    shell.extra_outputs[Out.PROMPT_FORMAT] = render.describe()
    engine = HFGenerateEngine(model, pad_token_id=tok.pad_token_id, eos_token_id=stop_token_ids(model, tok))
    encode, decode = text_codec(tok)

    partial = out_dir / "candidates.partial.jsonl"
    done: list[Candidate] = []
    if resume and partial.exists():
        done = [Candidate(**json.loads(line)) for line in partial.read_text().splitlines() if line.strip()]
    elif partial.exists():
        partial.unlink()
    B, n = cfg.prompts_per_batch, cfg.num_samples
    total = math.ceil(len(rows) / B)
    start = len(done) // (B * n)
    done = done[: start * B * n]
    shell.begin(start, resumed=start > 0)  # metrics are per batch: the batches done are kept
    with open(partial, "a") as f:
        for b in range(start, total):
            batch = rows[b * B:(b + 1) * B]
            torch.manual_seed(spec.seed * 1_000_003 + b)  # each batch reproducible, resumed or not
            roll = engine.generate([encode(render(r["prompt"]))[-cfg.max_prompt_length:] for r in batch],
                                   num_generations=n, max_new_tokens=cfg.max_new_tokens,
                                   temperature=cfg.temperature, top_p=cfg.top_p)
            texts = [decode(ids[m.bool()].tolist()) for ids, m in zip(roll.completion_ids, roll.completion_mask)]
            cands = [Candidate(batch[i // n], i % n, t, int(roll.lengths[i]), bool(roll.truncated[i]))
                     for i, t in enumerate(texts)]
            score_candidates(cands, cfg)
            for c in cands:
                f.write(json.dumps(c.to_json()) + "\n")
            f.flush()
            done += cands
            reporter.log_metrics(b + 1, {
                "reward": sum(c.reward for c in cands) / len(cands),
                "completions/mean_length": sum(c.length for c in cands) / len(cands),
                "rewards/format/mean": sum((c.checks["format"] or 0) for c in cands) / len(cands),
                "rewards/correct/mean": sum((c.checks["correct"] or 0) for c in cands) / len(cands)})
            reporter.flush()
            shell.step_done(b + 1, total)
            if shell.stop_requested and b + 1 < total:
                return shell.finish(b + 1, stopped=True, **code_sandbox)

    reasons: dict[tuple[str, int], str] = {}
    kept, funnel = filter_candidates(done, cfg, reasons)
    ck_step = checkpoint_step(spec.model_path)
    out_rows = [to_chat_row(c, spec.model_path, ck_step, spec.seed) for c in kept]
    out_rows, n_general = mix_general(out_rows, general, cfg.general_ratio, spec.seed, str(cfg.general_data))
    funnel.update(general_rows=n_general, total_rows=len(out_rows), checkpoint=spec.model_path,
                  checkpoint_step=ck_step, filters=list(FILTERS))
    dataset = out_dir / "dataset.jsonl"
    write_jsonl(out_rows, dataset)
    (out_dir / "funnel.json").write_text(json.dumps(funnel, indent=2))
    partial.replace(out_dir / "candidates.jsonl")
    # Every removed candidate and the filter that removed it (the rollout workbench reads this).
    write_jsonl([{"prompt_id": pid, "sample": k, "filter": f} for (pid, k), f in reasons.items()], out_dir / "removed.jsonl")
    metrics = {**funnel_metrics(funnel), "funnel/general_rows": float(n_general), "funnel/total_rows": float(len(out_rows))}
    reporter.log_metrics(total, metrics)
    k = len(out_rows) if cfg.log_samples < 0 else cfg.log_samples
    reporter.log_samples(total, [{"prompt": r["messages"][0]["content"], "completion": r["messages"][-1]["content"],
                                  "source": r["source"], **({"reward": r["provenance"]["reward"]} if "reward" in r["provenance"] else {})}
                                 for r in out_rows[:k]])
    reporter.flush()
    return shell.finish(total, eval_metrics=metrics, **{
        Out.DATASET: str(dataset), Out.FUNNEL: str(out_dir / "funnel.json"), Out.CANDIDATES: str(out_dir / "candidates.jsonl"),
        Out.REMOVED: str(out_dir / "removed.jsonl"), Out.NUM_ROWS: len(out_rows)}, **code_sandbox)
