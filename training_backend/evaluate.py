"""Evaluation as in DeepSeek-R1 §3: k samples per prompt at temperature 0.6, top-p 0.95.

- pass@1 = mean over prompts of (correct samples / k), "averaged over k samples" (R1's pass@1);
- cons@k = share of prompts whose majority-vote answer is correct; answers are grouped when
  `answers_equivalent` (math-verify) says so, so `1/2` and `0.5` vote together; a tie goes to the
  group that appeared first (deterministic); samples without an extractable answer do not vote;
- pass@k = the unbiased estimator 1 − C(n−c, k)/C(n, k) (Chen et al. 2021), reported for k = n;
- mean response length (tokens) and the reflection rate (reflection.reflection_stats).

Correct means accuracy == 1 (rewards.accuracy_rewards against the row's `answer`), or code == 1
for rows with `tests` (the sandboxed code reward). cons@k counts only prompts with a gold answer
(a majority vote over programs means nothing).

The same functions run as the `eval` stage (`run`) and inside a training stage every N steps
(`evaluate_prompts`, e.g. sft.train), reported as `eval/pass@1`, `eval/cons@k`, `eval/mean_length`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training_backend.config import EvalConfig, StageSpec
from training_backend.stage import Out, StageShell, TrainResult

# ------------------------------------------------------------------------------------------------
# The math (pure)


def pass_at_1(correct: Sequence[Sequence[bool]]) -> float:
    """Mean over prompts of the fraction of its samples that are correct."""
    per_prompt = [sum(c) / len(c) for c in correct if len(c)]
    return sum(per_prompt) / len(per_prompt) if per_prompt else math.nan


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_vote(answers: Sequence[str | None], equivalent: Callable[[str, str], bool] | None = None) -> str | None:
    """The answer of the largest group of equivalent answers (first-seen group wins ties); None when
    no sample has an answer. `equivalent(a, b)` defaults to rewards.answers_equivalent."""
    if equivalent is None:
        from training_backend.rewards import answers_equivalent as equivalent
    groups: list[list[str]] = []  # each group's first member is its representative
    for a in answers:
        if a is None or not a.strip():
            continue
        for g in groups:
            if a == g[0] or equivalent(g[0], a):
                g.append(a)
                break
        else:
            groups.append([a])
    if not groups:
        return None
    return max(groups, key=len)[0]  # max keeps the first of equal lengths


def cons_at_k(answers: Sequence[Sequence[str | None]], golds: Sequence[str],
              equivalent: Callable[[str, str], bool] | None = None) -> float:
    """Share of prompts whose majority answer is equivalent to the gold."""
    if equivalent is None:
        from training_backend.rewards import answers_equivalent as equivalent
    if not answers:
        return math.nan
    hits = 0
    for ans, gold in zip(answers, golds, strict=True):
        m = majority_vote(ans, equivalent)
        hits += m is not None and (m == gold or equivalent(gold, m))
    return hits / len(answers)


# ------------------------------------------------------------------------------------------------
# Generating and scoring


@dataclass
class PromptResult:
    row: dict
    completions: list[str]
    lengths: list[int]  # tokens
    truncated: list[bool]
    answers: list[str | None]
    correct: list[bool]

    def to_json(self) -> dict:
        return {"id": self.row.get("id"), "prompt": self.row["prompt"], "gold": self.row.get("answer"),
                "completions": self.completions, "answers": self.answers, "correct": self.correct,
                "lengths": self.lengths, "truncated": self.truncated}


def correctness(completions: list[str], rows: list[dict]) -> list[bool]:
    """accuracy == 1 (rows with an answer) or code == 1 (rows with tests); False otherwise."""
    from training_backend.rewards import REWARD_FUNCS

    acc = REWARD_FUNCS["accuracy"](completions, answer=[r.get("answer") for r in rows])
    out = [a is not None and a >= 1.0 for a in acc]
    code_idx = [i for i, r in enumerate(rows) if r.get("tests")]
    if code_idx:
        code = REWARD_FUNCS["code"]([completions[i] for i in code_idx], tests=[rows[i]["tests"] for i in code_idx])
        for i, v in zip(code_idx, code):
            out[i] = v is not None and v >= 1.0
    return out


def sample_prompts(engine, encode, decode, rows: list[dict], *, render: Callable[[str], str] | None, k: int,
                   temperature: float, top_p: float, max_new_tokens: int, max_prompt_length: int) -> list[PromptResult]:
    """k samples for each row from `engine` (a rollout.RolloutEngine), decoded and scored. `render`:
    prompt text -> model text (models.prompt_renderer); None = as is."""
    from training_backend.rewards import extract_answer

    prompts = [encode(render(r["prompt"]) if render else r["prompt"])[-max_prompt_length:] for r in rows]
    roll = engine.generate(prompts, num_generations=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    texts = [decode(ids[m.bool()].tolist()) for ids, m in zip(roll.completion_ids, roll.completion_mask)]
    rows_k = [r for r in rows for _ in range(k)]
    ok = correctness(texts, rows_k)
    lengths, trunc = roll.lengths.tolist(), roll.truncated.tolist()
    return [PromptResult(r, texts[i * k:(i + 1) * k], lengths[i * k:(i + 1) * k], trunc[i * k:(i + 1) * k],
                         [extract_answer(t) for t in texts[i * k:(i + 1) * k]], ok[i * k:(i + 1) * k])
            for i, r in enumerate(rows)]


def summarize(results: list[PromptResult], prefix: str = "eval/") -> dict[str, float]:
    """eval/pass@1, eval/cons@k, eval/pass@k, eval/mean_length, eval/clipped_ratio, eval/reflection/*."""
    from training_backend.reflection import reflection_stats

    if not results:
        return {}
    k = len(results[0].completions)
    m = {"pass@1": pass_at_1([r.correct for r in results]),
         "pass@k": sum(pass_at_k(len(r.correct), sum(r.correct), len(r.correct)) for r in results) / len(results)}
    voted = [r for r in results if r.row.get("answer") is not None and not r.row.get("tests")]
    if voted:
        m["cons@k"] = cons_at_k([r.answers for r in voted], [str(r.row["answer"]) for r in voted])
    lengths = [n for r in results for n in r.lengths]
    m["mean_length"] = sum(lengths) / len(lengths)
    m["clipped_ratio"] = sum(t for r in results for t in r.truncated) / len(lengths)
    m["k"] = float(k)
    m["num_prompts"] = float(len(results))
    texts = [t for r in results for t in r.completions]
    m.update(reflection_stats(texts, lengths, [c for r in results for c in r.correct]))
    return {prefix + key: v for key, v in m.items()}


def evaluate_prompts(engine, encode, decode, rows: list[dict], *, render: Callable[[str], str] | None, k: int,
                     temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 256,
                     max_prompt_length: int = 256, prompts_per_batch: int = 16,
                     on_batch: Callable[[int, int], None] | None = None) -> tuple[dict[str, float], list[PromptResult]]:
    """Sample and score all `rows` in batches; (summary metrics with the eval/ prefix, per-prompt results).
    For a training stage's periodic eval: call under the backend's `gathered()` on ZeRO-3."""
    results: list[PromptResult] = []
    n_batches = math.ceil(len(rows) / prompts_per_batch)
    for b in range(n_batches):
        results += sample_prompts(engine, encode, decode, rows[b * prompts_per_batch:(b + 1) * prompts_per_batch],
                                  render=render, k=k, temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens, max_prompt_length=max_prompt_length)
        if on_batch:
            on_batch(b + 1, n_batches)
    return summarize(results), results


# ------------------------------------------------------------------------------------------------
# The stage


def train(spec: StageSpec, reporter, *, resume: bool = False, template: str | None = None, progress=print,
          handle_sigterm: bool = True, metrics_path: str | None = None) -> TrainResult:
    """Run an `eval` stage: metrics to the reporter (step 0) and outputs.json; per-prompt results in
    <output_dir>/eval_results.jsonl. `resume` continues after the prompt batches already done."""
    with StageShell(spec, reporter, kind="eval", resume=resume, progress=progress, handle_sigterm=handle_sigterm,
                    metrics_path=metrics_path) as shell:
        return _train(spec, reporter, shell, template, resume)


def _train(spec: StageSpec, reporter, shell: StageShell, template: str | None, resume: bool) -> TrainResult:
    import torch

    from training_backend.data import read_prompt_jsonl
    from training_backend.rewards.sandbox import code_sandbox_for_rows
    from training_backend.rollout import HFGenerateEngine
    from training_backend.models import load_model_and_tokenizer, prompt_renderer, stop_token_ids, text_codec

    cfg: EvalConfig = spec.config
    rows = read_prompt_jsonl(spec.train_data)
    if cfg.max_prompts:
        rows = rows[: cfg.max_prompts]
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

    # Per-batch results are appended to a partial file: a stopped eval resumes where it was.
    partial = out_dir / "eval_results.partial.jsonl"
    done: list[dict] = []
    if resume and partial.exists():
        done = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    elif partial.exists():
        partial.unlink()
    B = cfg.prompts_per_batch
    total = math.ceil(len(rows) / B)
    start = len(done) // B if len(done) % B == 0 or len(done) == len(rows) else 0
    done = done[: start * B]
    shell.begin(start, resumed=False)  # everything is logged at the end: the run starts over
    with open(partial, "a") as f:
        for b in range(start, total):
            torch.manual_seed(spec.seed * 1_000_003 + b)  # each batch reproducible, resumed or not
            res = sample_prompts(engine, encode, decode, rows[b * B:(b + 1) * B], render=render,
                                 k=cfg.num_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                 max_new_tokens=cfg.max_new_tokens, max_prompt_length=cfg.max_prompt_length)
            for r in res:
                f.write(json.dumps(r.to_json()) + "\n")
                done.append(r.to_json())
            f.flush()
            shell.step_done(b + 1, total)
            if shell.stop_requested and b + 1 < total:
                return shell.finish(b + 1, stopped=True, **code_sandbox)

    results = [PromptResult(rows[i], d["completions"], d["lengths"], d["truncated"], d["answers"], d["correct"])
               for i, d in enumerate(done)]
    metrics = summarize(results)
    reporter.log_metrics(0, metrics)
    n = len(done) * cfg.num_samples if cfg.log_samples < 0 else cfg.log_samples
    reporter.log_samples(0, [{"prompt": r.row["prompt"], "prompt_id": r.row.get("id"), "completion": c,
                              "answer": a, "gold": r.row.get("answer"), "correct": ok, "length": n_tok}
                             for r in results for c, a, ok, n_tok in zip(r.completions, r.answers, r.correct, r.lengths)][:n])
    reporter.flush()
    final_results = out_dir / "eval_results.jsonl"
    partial.replace(final_results)
    return shell.finish(total, eval_metrics=metrics, **{Out.MODEL: spec.model_path, Out.RESULTS: str(final_results)},
                        **code_sandbox)

