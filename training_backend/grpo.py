"""GRPO: the math (pure tensor functions) and the training loop, top to bottom.

    for step:  sample G completions per prompt  ->  score with rule rewards
               ->  group-relative advantages    ->  reference log-probs (no grad, if beta > 0)
               ->  clipped policy-gradient + k3 KL loss, one or more optimizer passes
               ->  metrics, samples, progress line, checkpoint

Where this departs from the DeepSeek-R1 / DeepSeekMath GRPO formulation, and why:
- KL is added to the loss per token (k3 estimator) as in the paper, but the default coefficient is
  TRL-like 0.04 for tiny models rather than R1's 0.001 (config field `beta`).
- `loss_type` offers the later fixes besides the paper's per-sequence mean: `bnpo`/`dapo` (token
  mean over the batch, no length bias towards short correct answers) and `dr_grpo` (sum / (B·T),
  with `scale_rewards=False` for Dr. GRPO's unscaled advantages).
- With `num_iterations == 1` and a single minibatch the policy that sampled is the one being
  updated, so the "old" log-probs equal the current ones detached: we do not run a separate
  forward pass for them (ratio = 1, gradient unchanged). TRL does the same.
- R1 replaces the reference model every 400 steps; `ref_sync_steps` does that (0 = never).
- Completions that were cut at `max_completion_length` still get their reward (as in the paper);
  `mask_truncated_completions` drops them from the loss (DAPO's overlong filtering).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from training_backend import telemetry
from training_backend.config import GRPOConfig, StageSpec
from training_backend.data import prompts_for_step
from training_backend.stage import Out, StageShell, TrainResult

# ------------------------------------------------------------------------------------------------
# The math


def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:
    """(r - mean_group) / (std_group + eps), or r - mean_group when not scale_rewards (Dr. GRPO).

    `rewards` is (B·G,) with each prompt's G completions contiguous; std is unbiased (torch.std).
    """
    r = rewards.view(-1, group_size)  # (B, G)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale_rewards:
        centred = centred / (r.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)  # (B·G,)


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, clip_eps: float = 0.2,
              clip_eps_high: float | None = None, beta: float = 0.04,
              loss_type: str = "grpo") -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped GRPO objective with a k3 KL penalty, aggregated over tokens per `loss_type`.

    logprobs, old_logprobs, ref_logprobs, mask: (B, T) per sampled token; advantages: (B,).
    Per token: -min(ρA, clip(ρ, 1-ε, 1+ε_high)·A) + β·(exp(ref-logp) - (ref-logp) - 1), ρ = exp(logp-old).
    """
    mask = mask.to(logprobs.dtype)
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    A = advantages.unsqueeze(1)  # (B, 1)
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + eps_high)
    per_token = -torch.min(ratio * A, clipped * A)  # (B, T)
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("ref_logprobs is needed when beta != 0")
        d = ref_logprobs - logprobs
        kl = torch.exp(d) - d - 1  # (B, T), k3 estimator of KL(π || π_ref)
        per_token = per_token + beta * kl
    else:
        kl = None

    count = mask.sum().clamp(min=1.0)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()
    elif loss_type in ("bnpo", "dapo"):
        loss = (per_token * mask).sum() / count
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (mask.shape[0] * mask.shape[1])
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}")

    with torch.no_grad():
        low = ((ratio < 1 - clip_eps) & (A < 0)).to(mask.dtype)  # clipped below, matters only when A < 0
        high = ((ratio > 1 + eps_high) & (A > 0)).to(mask.dtype)
        stats = {
            "clip_ratio/low_mean": float((low * mask).sum() / count),
            "clip_ratio/high_mean": float((high * mask).sum() / count),
            "clip_ratio/region_mean": float(((low + high) * mask).sum() / count),
            "kl": float((kl * mask).sum() / count) if kl is not None else 0.0,
        }
    return loss, stats


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   num_completion: int, temperature: float = 1.0,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the last `num_completion` tokens of each row under `model`.

    input_ids, attention_mask: (N, L) = prompt (left-padded) + completion (right-padded).
    Returns (N, C) log-probs, and (N, C) entropies of the sampling distribution when asked.
    Only the logits that score completion tokens are computed (`logits_to_keep`).
    """
    C = num_completion
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # left padding: real tokens start at 0
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=C + 1, use_cache=False).logits  # (N, C+1, V)
    logits = logits[:, :-1].float() / temperature  # (N, C, V): position t predicts token t+1
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, input_ids[:, -C:].unsqueeze(-1)).squeeze(-1)  # (N, C)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N, C)
    return logp, entropy


# Tokens per forward/backward chunk (whole prompt groups, the prompt counted once per group).
# Measured on this project's CPU (benchmarks/grpo_step.py): 8x8 completions of 48 tokens on the
# tiny model run as 3 chunks in the time of one and with half the activation memory; a ~12M
# Qwen2-style model with 8,192 tokens runs one group (96 + 8x128 tokens) per chunk, ~0.5 GB.
CHUNK_TOKENS = 1536


def completion_logprobs(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                        completion_ids: torch.Tensor, completion_mask: torch.Tensor, group_size: int,
                        temperature: float = 1.0,
                        with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`token_logprobs` of prompt + completion, with each prompt's forward pass shared by its group.

    prompt_ids, prompt_mask: (N, P) left-padded, prompt-major (rows i·G … i·G+G-1 hold the same
    prompt); completion_ids, completion_mask: (N, C) right-padded. Returns (N, C) log-probs and,
    when asked, (N, C) entropies: the same numbers as `token_logprobs` on the concatenation, float
    noise apart. The prompts run once (N/G rows, their all-padding columns dropped), their keys and
    values are repeated G times, and the completions run against them; the first completion token
    is scored by the prompt pass's last logits. Gradients flow back through the repeat into the
    one prompt pass. Positions are token_logprobs' (real tokens count from 0).
    """
    from transformers import DynamicCache

    from training_backend.rollout import cache_kwarg

    G = group_size
    N, C = completion_ids.shape
    p_ids, p_mask = prompt_ids[::G], prompt_mask[::G]  # (B, P)
    first_real = int(p_mask.any(0).long().argmax()) if p_mask.numel() else 0
    p_ids, p_mask = p_ids[:, first_real:], p_mask[:, first_real:]
    pos = (p_mask.cumsum(1) - 1).clamp(min=0)  # (B, P')
    kw = cache_kwarg(model)
    cache = DynamicCache(config=model.config)
    first = model(input_ids=p_ids, attention_mask=p_mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                  **{kw: cache}).logits  # (B, 1, V): predicts completion token 0
    first = first.repeat_interleave(G, 0)  # (N, 1, V)
    logp, ent = _scored(first, completion_ids[:, :1], temperature, with_entropy)
    if C > 1:
        cache.batch_repeat_interleave(G)
        c_pos = pos[:, -1:].repeat_interleave(G, 0) + 1 + torch.arange(C - 1, device=pos.device)  # (N, C-1)
        attn = torch.cat([p_mask.repeat_interleave(G, 0), completion_mask[:, :-1]], 1)  # (N, P' + C-1)
        rest = model(input_ids=completion_ids[:, :-1], attention_mask=attn, position_ids=c_pos, use_cache=True,
                     **{kw: cache}).logits  # (N, C-1, V): position t predicts token t+1
        del cache
        logp_rest, ent_rest = _scored(rest, completion_ids[:, 1:], temperature, with_entropy)
        logp = torch.cat([logp, logp_rest], 1)
        ent = torch.cat([ent, ent_rest], 1) if with_entropy else None
    return logp, ent


def _scored(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
            with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(n, t, V) logits, (n, t) targets -> (n, t) log-probs, and entropies when asked."""
    logits = logits.float()
    if temperature != 1.0:  # x / 1.0 == x: skip a (n, t, V) copy
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)  # (n, t, V)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            p = logp_all.exp()
            entropy = -p.mul_(logp_all).sum(-1)  # (n, t)
    return logp, entropy


def group_chunks(n_rows: int, group_size: int, tokens_per_group: int, budget: int) -> list[slice]:
    """Row slices of whole groups, about `budget` tokens each (at least one group)."""
    per = group_size * max(1, budget // max(1, tokens_per_group))
    return [slice(i, min(i + per, n_rows)) for i in range(0, n_rows, per)]


# ------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Scored:
    rewards: torch.Tensor  # (N,) combined
    per_fn: dict[str, list[float | None]]
    correct: list[bool] | None  # accuracy == 1, when accuracy is among the rewards


def score(completions: list[str], rows: list[dict], lengths: list[int], cfg: GRPOConfig) -> Scored:
    from training_backend.rewards import REWARD_FUNCS, combine_rewards

    columns = {"answer": [r.get("answer") for r in rows], "tests": [r.get("tests") for r in rows],
               "target_lang": [r.get("target_lang") for r in rows], "completion_lengths": lengths,
               "prompts": [r["prompt"] for r in rows], "type": [r.get("type") for r in rows]}
    if "reward_model" in cfg.reward_funcs:  # the preference reward's settings (training_backend.reward_model)
        columns.update(reward_model_path=cfg.reward_model_path, reward_model_types=cfg.reward_model_types)
    per_fn = {name: list(REWARD_FUNCS[name](completions, **columns)) for name in cfg.reward_funcs}
    weights = dict(zip(cfg.reward_funcs, cfg.reward_weights or [1.0] * len(cfg.reward_funcs)))
    combined = torch.tensor(combine_rewards(per_fn, weights), dtype=torch.float32)
    correct = [v is not None and v >= 1.0 for v in per_fn["accuracy"]] if "accuracy" in per_fn else None
    return Scored(combined, per_fn, correct)


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    v = [x for x in values if x is not None]
    if not v:
        return float("nan"), float("nan")
    t = torch.tensor(v, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(v) > 1 else 0.0


# ------------------------------------------------------------------------------------------------
# The loop


def train(spec: StageSpec, reporter, *, resume: bool = False, template: str | None = None,
          progress=print, handle_sigterm: bool = True, metrics_path: str | None = None) -> TrainResult:
    """Run a GRPO stage. `reporter` gets metrics and samples; `progress` gets R1LAB_PROGRESS lines.

    `template`: the model folder's r1lab_template.txt (None without one); with `prompt_format` it picks how
    prompts are rendered (training_backend.models.prompt_renderer).
    """
    with StageShell(spec, reporter, kind="grpo", resume=resume, progress=progress, handle_sigterm=handle_sigterm,
                    metrics_path=metrics_path) as shell:
        return _train(spec, reporter, shell, template)


def _train(spec: StageSpec, reporter, shell: StageShell, template: str | None) -> TrainResult:
    from training_backend.data import read_prompt_jsonl
    from training_backend.distributed import OptimConfig, peak_memory_metrics, setup_backend, write_checkpoint
    from training_backend.reflection import reflection_stats
    from training_backend.rewards import extract_answer, extract_think
    from training_backend.rollout import HFGenerateEngine
    from training_backend.rollout_vllm import importance_sampling_metrics
    from training_backend.models import load_model_and_tokenizer, prompt_renderer, stop_token_ids, text_codec

    cfg: GRPOConfig = spec.config
    # Model code runs only in a full sandbox unless the config opts out: refuse before anything
    # loads (SandboxRefused, a ConfigError: exit 2), and record the level in outputs.json.
    code_sandbox = None
    if "code" in cfg.reward_funcs:
        from training_backend.rewards.sandbox import require_isolation, set_unsandboxed_allowed

        code_sandbox = require_isolation(cfg.allow_unsandboxed_code, field_name="reward_funcs")
        set_unsandboxed_allowed(cfg.allow_unsandboxed_code)
    train_rows = read_prompt_jsonl(spec.train_data)  # every bad row (DatasetError, exit 2) before a model loads
    eval_rows = read_prompt_jsonl(spec.eval_data)[: cfg.eval_max_prompts] if spec.eval_data else []
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    G = cfg.num_generations
    prompts_per_step = cfg.batch_size // G

    # --- models: policy (trained), reference (frozen, only when beta > 0)
    ckpt = shell.resume_checkpoint
    load_from = ckpt or Path(spec.model_path)
    torch.manual_seed(spec.seed)
    model, tok = load_model_and_tokenizer(load_from)
    model.config.use_cache = True
    render = prompt_renderer(tok, template, cfg.prompt_format, cfg.system_prompt, cfg.prompt_template)  # ConfigError (exit 2) before training
    shell.extra_outputs[Out.PROMPT_FORMAT] = render.describe()
    stops = stop_token_ids(model, tok)
    ref_model = None
    if cfg.beta > 0:
        ref_model, _ = load_model_and_tokenizer(spec.model_path)
        if ckpt and (ckpt / "ref_model.pt").exists():
            ref_model.load_state_dict(torch.load(ckpt / "ref_model.pt", weights_only=True))
        ref_model.eval().requires_grad_(False)

    optim_steps_per_step = cfg.minibatches * cfg.num_iterations
    backend = setup_backend(
        model, OptimConfig(cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, cfg.weight_decay, cfg.max_grad_norm,
                           cfg.lr_scheduler, cfg.warmup_steps * optim_steps_per_step),
        engine=cfg.engine, zero_stage=cfg.zero_stage, total_steps=cfg.max_steps * optim_steps_per_step,
        micro_batch_size=cfg.batch_size // cfg.minibatches, bf16=cfg.bf16)
    policy = backend.module
    if ref_model is not None:  # beside the policy, in its precision (DeepSpeed moved and cast the policy)
        ref_model.to(device=backend.device, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    if ckpt:
        backend.load_state(ckpt)
    start_step = shell.resume_step
    if cfg.rollout_engine == "vllm":
        # GPU workers: a colocated vLLM engine loaded from the same weights; the trainer pushes
        # its parameters into it after every step's optimisation passes (below).
        from training_backend.rollout import VLLMEngine

        engine = VLLMEngine(str(load_from), pad_token_id=tok.pad_token_id, eos_token_id=stops,
                            max_model_len=cfg.max_prompt_length + cfg.max_completion_length,
                            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                            tied_embeddings=bool(getattr(model.config, "tie_word_embeddings", False)), seed=spec.seed)
    else:
        engine = HFGenerateEngine(policy, pad_token_id=tok.pad_token_id, eos_token_id=stops)
    encode, decode = text_codec(tok)

    encoded = [encode(render(r["prompt"]))[-cfg.max_prompt_length:] for r in train_rows]

    num_tokens_seen = 0.0
    # MFU's model FLOPs per token of a step (telemetry.py): forward-only passes (generation, the
    # reference model, the old policy when the batch is reused) and num_iterations training passes.
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in policy.parameters())
    forward_only = 1 + (ref_model is not None) + (cfg.num_iterations > 1 or cfg.minibatches > 1)
    flops_per_token = telemetry.model_flops_per_token(n_params, forward_passes=forward_only, train_passes=cfg.num_iterations)
    step_times: list[float] = []
    last_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}

    def evaluate(step: int) -> dict[str, float]:
        rows = eval_rows
        with backend.gathered():
            roll = engine.generate([encode(render(r["prompt"]))[-cfg.max_prompt_length:] for r in rows],
                                   num_generations=1, max_new_tokens=cfg.max_completion_length, greedy=True)
        texts = [decode(ids[m.bool()].tolist()) for ids, m in zip(roll.completion_ids, roll.completion_mask)]
        s = score(texts, rows, roll.lengths.tolist(), cfg)
        m = {"eval/reward": float(s.rewards.mean()), "eval/mean_length": float(roll.lengths.float().mean())}
        if s.correct is not None:
            m["eval/accuracy"] = sum(s.correct) / len(s.correct)
        if cfg.eval_num_samples:  # R1's protocol: pass@1 over k samples and cons@k (training_backend.evaluate)
            from training_backend.evaluate import evaluate_prompts

            with backend.gathered():
                sampled, _ = evaluate_prompts(engine, encode, decode, rows, render=render, k=cfg.eval_num_samples,
                                              max_new_tokens=cfg.max_completion_length,
                                              max_prompt_length=cfg.max_prompt_length)
            m.update({k: v for k, v in sampled.items() if k != "eval/mean_length"})  # keep the greedy length
        reporter.log_metrics(step, m)
        return m

    def checkpoint(step: int) -> None:
        sync_ref = ref_model if cfg.ref_sync_steps else None
        shell.save_checkpoint(step, lambda folder: write_checkpoint(folder, backend, tok, ref_model=sync_ref),
                              keep=cfg.save_total_limit)

    step = start_step
    shell.begin(start_step, resumed=ckpt is not None)  # a crashed attempt's later steps are history now
    if eval_rows and start_step == 0:
        eval_metrics = evaluate(0)  # the base model's held-out score, for comparison at the end
    for step in range(start_step + 1, cfg.max_steps + 1):
        t_step = time.perf_counter()
        rows = [train_rows[i] for i in prompts_for_step(len(train_rows), prompts_per_step, step - 1, spec.seed)]
        rows_g = [r for r in rows for _ in range(G)]  # (N,) prompt-major, N = prompts · G

        # 1. sample G completions per prompt (seeded per step: reproducible across resume)
        torch.manual_seed(spec.seed * 1_000_003 + step)
        t0 = time.perf_counter()
        with backend.gathered():
            roll = engine.generate([encoded[i] for i in prompts_for_step(len(train_rows), prompts_per_step, step - 1, spec.seed)],
                                   num_generations=G, max_new_tokens=cfg.max_completion_length,
                                   temperature=cfg.temperature, top_p=cfg.top_p).to(backend.device)
        t_generate = time.perf_counter() - t0
        comp_mask = roll.completion_mask  # (N, C)
        lengths = roll.lengths  # (N,)
        completions = [decode(ids[m.bool()].tolist()) for ids, m in zip(roll.completion_ids, comp_mask)]

        # 2. rewards and group-relative advantages
        t0 = time.perf_counter()
        scored = score(completions, rows_g, lengths.tolist(), cfg)
        advantages = group_advantages(scored.rewards, G, cfg.scale_rewards).to(backend.device)  # (N,)
        t_reward = time.perf_counter() - t0

        input_ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)  # (N, P + C)
        attn = torch.cat([roll.prompt_mask, comp_mask], 1)  # (N, P + C)
        C = comp_mask.shape[1]
        loss_mask = comp_mask.clone()
        if cfg.mask_truncated_completions:
            loss_mask[roll.truncated] = 0

        # 3. reference (and, when the batch is reused, old-policy) log-probs, no grad. Every pass runs
        # in chunks of whole groups (each prompt's forward shared by its G completions, completions
        # cut to the chunk's longest): same numbers as one pass over the batch, less memory.
        t0 = time.perf_counter()
        reuse = cfg.num_iterations > 1 or cfg.minibatches > 1
        N = input_ids.shape[0]
        mb_size = N // cfg.minibatches

        def chunks(rows: slice) -> list[tuple[slice, int, int]]:
            """(row slice, group size, completion length) per chunk of `rows`; prompts are shared
            only when `rows` holds whole groups (a minibatch that splits one runs rows alone)."""
            g = G if rows.start % G == 0 and (rows.stop - rows.start) % G == 0 else 1
            out = []
            for c in group_chunks(rows.stop - rows.start, g, roll.prompt_ids.shape[1] + g * C, CHUNK_TOKENS):
                ch = slice(rows.start + c.start, rows.start + c.stop)
                out.append((ch, g, max(1, int(lengths[ch].max()))))
            return out

        def logprobs(model, ch: slice, g: int, Cc: int, with_entropy: bool = False):
            return completion_logprobs(model, roll.prompt_ids[ch], roll.prompt_mask[ch], roll.completion_ids[ch, :Cc],
                                       comp_mask[ch, :Cc], g, cfg.temperature, with_entropy)

        def full_batch_logprobs(model) -> torch.Tensor:  # (N, C), zero past each chunk's longest
            out = comp_mask.new_zeros((N, C), dtype=torch.float32)
            for mb in range(cfg.minibatches):
                for ch, g, Cc in chunks(slice(mb * mb_size, (mb + 1) * mb_size)):
                    out[ch, :Cc] = logprobs(model, ch, g, Cc)[0]
            return out

        with torch.no_grad():
            ref_logp = full_batch_logprobs(ref_model) if ref_model is not None else None
            if reuse:
                with backend.gathered():
                    old_logp = full_batch_logprobs(policy)
        t_ref = time.perf_counter() - t0

        # 4. optimisation: num_iterations passes of `minibatches` updates each, each update the
        # gradient of the minibatch's loss accumulated over its chunks (each chunk's loss weighted
        # by its share of the minibatch's normaliser, so that the sum is the minibatch's loss)
        t0 = time.perf_counter()
        policy.train()
        mb_stats, losses, grad_norms, entropies, is_stats = [], [], [], [], []
        for it in range(cfg.num_iterations):
            for mb in range(cfg.minibatches):
                sl = slice(mb * mb_size, (mb + 1) * mb_size)
                mb_chunks = chunks(sl)
                n_mb, count_mb = mb_size, float(loss_mask[sl].sum())
                loss_sum, ent_sum, stats_sum = 0.0, 0.0, {}
                logp_mb = (comp_mask.new_zeros((n_mb, C), dtype=torch.float32)
                           if it == 0 and roll.sampling_logprobs is not None else None)
                for i, (ch, g, Cc) in enumerate(mb_chunks):
                    with shell.timer.phase("policy_forward"):
                        logp, ent = logprobs(policy, ch, g, Cc, with_entropy=True)  # (n, Cc)
                        if logp_mb is not None:
                            logp_mb[ch.start - sl.start:ch.stop - sl.start, :Cc] = logp.detach()
                        old = old_logp[ch, :Cc] if reuse else logp.detach()
                        lm = loss_mask[ch, :Cc]
                        loss, stats = grpo_loss(logp, old, ref_logp[ch, :Cc] if ref_logp is not None else None,
                                                advantages[ch], lm, clip_eps=cfg.clip_eps,
                                                clip_eps_high=cfg.clip_eps_high, beta=cfg.beta, loss_type=cfg.loss_type)
                    n_c, count_c = ch.stop - ch.start, float(lm.sum())
                    w = {"grpo": n_c / n_mb, "dr_grpo": n_c * Cc / (n_mb * C)}.get(
                        cfg.loss_type, max(count_c, 1.0) / max(count_mb, 1.0))  # bnpo/dapo: token mean
                    with shell.timer.phase("policy_backward"):
                        backend.backward(loss * w, last=i == len(mb_chunks) - 1)
                    loss_sum += float(loss.detach()) * w
                    for k, v in stats.items():  # token means over the minibatch
                        stats_sum[k] = stats_sum.get(k, 0.0) + v * count_c / max(count_mb, 1.0)
                    ent_sum += float((ent * comp_mask[ch, :Cc]).sum())
                if logp_mb is not None:
                    # The sampler's log-probs vs the trainer's on the same tokens, before this
                    # step's first update: a ratio far from 1 means stale weights in the engine.
                    found = importance_sampling_metrics(logp_mb, roll.sampling_logprobs[sl], comp_mask[sl])
                    if found:
                        is_stats.append(found)
                with shell.timer.phase("optimizer"):
                    grad_norms.append(backend.step())
                losses.append(float(loss_sum))
                mb_stats.append(stats_sum)
                entropies.append(ent_sum / max(float(comp_mask[sl].sum()), 1.0))
        policy.eval()
        if cfg.rollout_engine == "vllm":
            with shell.timer.phase("weight_sync"):
                engine.update_weights(named_params=backend.named_full_parameters())
        if ref_model is not None and cfg.ref_sync_steps and step % cfg.ref_sync_steps == 0:
            ref_model.load_state_dict(backend.state_dict_for_save())
        t_train = time.perf_counter() - t0

        # 5. metrics (TRL's names) and samples
        step_time = time.perf_counter() - t_step
        step_times.append(step_time)
        n_tokens = float(attn.sum())
        num_tokens_seen += n_tokens
        r = scored.rewards.view(-1, G)
        lf = lengths.float()
        metrics = {
            "loss": sum(losses) / len(losses),
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "learning_rate": backend.learning_rate(),
            "reward": float(scored.rewards.mean()),
            "reward_std": float(r.std(1).mean()),
            "frac_reward_zero_std": float((r.std(1) < 1e-6).float().mean()),
            "completions/mean_length": float(lf.mean()),
            "completions/min_length": float(lf.min()),
            "completions/max_length": float(lf.max()),
            "completions/clipped_ratio": float(roll.truncated.float().mean()),
            "entropy": sum(entropies) / len(entropies),
            "num_tokens": num_tokens_seen,
            "step_time": step_time,
            "time/generate": t_generate,
            "time/reward": t_reward,
            "time/reference": t_ref,
            "time/train": t_train,
            "throughput/tokens_per_s": n_tokens / step_time,
            **peak_memory_metrics(),
            # time/policy_forward|policy_backward|optimizer|weight_sync, system/*, perf/mfu (telemetry.py)
            **shell.step_metrics(tokens_per_s=n_tokens / step_time, flops_per_token=flops_per_token),
        }
        for k in mb_stats[0]:
            metrics[k] = sum(s[k] for s in mb_stats) / len(mb_stats)
        for name, vals in scored.per_fn.items():
            metrics[f"rewards/{name}/mean"], metrics[f"rewards/{name}/std"] = _mean_std(vals)
        for k in (is_stats[0] if is_stats else {}):
            metrics[k] = sum(st[k] for st in is_stats) / len(is_stats)
        metrics.update(reflection_stats(completions, lengths.tolist(), scored.correct))
        reporter.log_metrics(step, metrics)
        k = N if cfg.log_samples < 0 else min(cfg.log_samples, N)
        reporter.log_samples(step, [{
            "prompt": rows_g[i]["prompt"], "prompt_id": rows_g[i].get("id"), "completion": completions[i],
            "think": extract_think(completions[i]), "answer": extract_answer(completions[i]),
            "gold": rows_g[i].get("answer"),
            "rewards": {n: v[i] for n, v in scored.per_fn.items()}, "reward": float(scored.rewards[i]),
            "advantage": float(advantages[i]), "length": int(lengths[i]),
            "truncated": bool(roll.truncated[i]), "group": i // G, "index": i % G,
        } for i in range(k)])
        last_metrics = metrics

        if eval_rows and cfg.eval_steps and step % cfg.eval_steps == 0:
            eval_metrics = evaluate(step)
        reporter.flush()
        shell.step_done(step, cfg.max_steps)
        # after the progress line: a SIGTERM that lands while it is printed still gets this step's checkpoint
        if shell.checkpoint_due(step, cfg.max_steps, cfg.save_steps):
            checkpoint(step)
        if shell.stop_requested:
            return _finish(shell, step, True, None, last_metrics, eval_metrics, step_times, code_sandbox)

    if eval_rows and (not cfg.eval_steps or step % cfg.eval_steps):
        eval_metrics = evaluate(step)
    return _finish(shell, step, False, shell.final_model(), last_metrics, eval_metrics, step_times, code_sandbox)


def _finish(shell: StageShell, step: int, stopped: bool, final: str | None, last: dict, eval_metrics: dict,
            step_times: list[float], code_sandbox: dict | None) -> TrainResult:
    summary = {"step": step, "stopped": stopped, **{f"last/{k}": v for k, v in last.items()
                                                     if k in ("reward", "completions/mean_length", "kl", "rewards/accuracy/mean")},
               **eval_metrics}
    if step_times:
        summary["median_step_time"] = sorted(step_times)[len(step_times) // 2]
    extra = {Out.CODE_SANDBOX: code_sandbox} if code_sandbox is not None else {}
    return shell.finish(step, stopped=stopped, final=final, summary=summary, **extra)
