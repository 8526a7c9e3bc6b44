"""Preference rewards for R1's all-scenario RL: a Bradley–Terry reward model, trained and used.

    train(spec, reporter)        the `reward_model` stage: a sequence-classification head (1 label)
                                 on the base model, fit to {"prompt", "chosen", "rejected"} pairs
    RewardModelScorer(path)      scores (prompt, response) pairs with a trained one
    reward_model_rewards(...)    TRL's reward contract over it; REWARD_FUNCS["reward_model"]

The loss is Bradley–Terry's −log σ(r_chosen − r_rejected) (InstructGPT, TRL's RewardTrainer),
optionally plus `center_rewards_coefficient`·(r_chosen + r_rejected)² (Eisenstein et al., TRL's
`center_rewards_coefficient`) so that scores stay near 0 and add sensibly to rule rewards.

A scored text is [user: prompt, assistant: response] rendered as the SFT stage renders a
conversation (sft.encode_chat with the stage's prompt renderer: a template's `prompt + " " +
response + EOS`, or the tokenizer's chat template), right-padded; the classifier reads the last
non-pad token (transformers' `*ForSequenceClassification` does this with `pad_token_id`).

Where this departs from R1: R1's preference rewards came from separate helpfulness and
harmlessness models over the whole response (and only the final summary for helpfulness); here
there is one model, and it reads the whole response.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from training_backend.config import RewardModelConfig, StageSpec
from training_backend.stage import Out, StageShell, TrainResult

# ------------------------------------------------------------------------------------------------
# The math


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor,
                       center_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """chosen, rejected: (B,) scores. −mean log σ(c − r) [+ coef·mean (c + r)²]; and its stats."""
    margin = chosen - rejected  # (B,)
    loss = -torch.nn.functional.logsigmoid(margin).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    with torch.no_grad():
        stats = {"accuracy": float((margin > 0).float().mean()), "margin": float(margin.mean()),
                 "rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean())}
    return loss, stats


# ------------------------------------------------------------------------------------------------
# Loading and encoding


def load_reward_model(path: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """(sequence-classification model with one label, tokenizer). From a causal-LM folder the head is
    new (randomly initialised); from a trained reward model it is that model's."""
    from transformers import AutoModelForSequenceClassification

    from training_backend.models import load_tokenizer

    tok = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def encode_pair_texts(tok, prompts: Sequence[str], responses: Sequence[str], render, max_len: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), both (B, T), right-padded; each row is the conversation [user: prompt, assistant:
    response] as the SFT stage renders it with `render` (models.PromptRenderer: the template's
    `prompt + " " + response + EOS`, or the chat template's turns), cut from the left when longer
    than max_len (the response end is what is read)."""
    from training_backend.sft import encode_chat

    rows = [encode_chat([{"role": "user", "content": p}, {"role": "assistant", "content": r.strip()}], tok, render)[0][-max_len:]
            for p, r in zip(prompts, responses, strict=True)]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _scores(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, 0].float()  # (B,)


# ------------------------------------------------------------------------------------------------
# The scorer (a reward function)


class RewardModelScorer:
    """A trained reward model as a scorer: `score(prompts, responses) -> list[float]`."""

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 32, max_len: int = 512,
                 template: str | None = None, device: str | None = None):
        self.path = str(path)
        self.model, self.tok = load_reward_model(path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval().requires_grad_(False)
        from training_backend.models import prompt_renderer

        meta = Path(path) / "r1lab_template.txt"  # the stage writes its template there; else the chat template
        template = template if template is not None else (meta.read_text().strip("\n") if meta.exists() else None)
        self.render = prompt_renderer(self.tok, template)
        self.batch_size = batch_size
        self.max_len = max_len

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(prompts), self.batch_size):
            ids, mask = encode_pair_texts(self.tok, prompts[i:i + self.batch_size], responses[i:i + self.batch_size],
                                          self.render, self.max_len)
            out += _scores(self.model, ids.to(self.device), mask.to(self.device)).tolist()
        return out


_SCORERS: dict[str, RewardModelScorer] = {}


def get_scorer(path: str | os.PathLike) -> RewardModelScorer:
    """One loaded scorer per reward-model folder per process."""
    key = str(Path(path).resolve())
    if key not in _SCORERS:
        _SCORERS[key] = RewardModelScorer(path)
    return _SCORERS[key]


def reward_model_rewards(completions: Sequence[object], *, prompts: Sequence[str] | None = None,
                         type: Sequence[str | None] | None = None, reward_model_path: str | None = None,
                         reward_model_types: Sequence[str] = ("general",), **_columns: object) -> list[float | None]:
    """TRL's contract: the reward model's score for rows whose `type` is in `reward_model_types`,
    None for the others (rule rewards score those). Rows without a `type` column count as
    "general". Needs the `prompts` column and the `reward_model_path` setting."""
    from training_backend.rewards import as_text

    if reward_model_path is None:
        raise ValueError("the reward_model reward needs reward_model_path (GRPOConfig.reward_model_path)")
    if prompts is None:
        raise ValueError("the reward_model reward needs the prompts column")
    types = list(type) if type is not None else ["general"] * len(completions)
    idx = [i for i, t in enumerate(types) if (t or "general") in reward_model_types]
    out: list[float | None] = [None] * len(completions)
    if idx:
        scores = get_scorer(reward_model_path).score([prompts[i] for i in idx], [as_text(completions[i]) for i in idx])
        for i, s in zip(idx, scores):
            out[i] = s
    return out


# ------------------------------------------------------------------------------------------------
# The stage


def train(spec: StageSpec, reporter, *, resume: bool = False, template: str | None = None, progress=print,
          handle_sigterm: bool = True, metrics_path: str | None = None) -> TrainResult:
    """Run a `reward_model` stage (see the module docstring)."""
    with StageShell(spec, reporter, kind="reward_model", resume=resume, progress=progress,
                    handle_sigterm=handle_sigterm, metrics_path=metrics_path) as shell:
        return _train(spec, reporter, shell, template)


def _train(spec: StageSpec, reporter, shell: StageShell, template: str | None) -> TrainResult:
    from training_backend.data import prompts_for_step, read_preference_jsonl
    from training_backend.distributed import OptimConfig, setup_backend, write_checkpoint
    from training_backend.models import prompt_renderer
    from training_backend.sft import num_steps

    cfg: RewardModelConfig = spec.config
    rows = read_preference_jsonl(spec.train_data)  # DatasetError (exit 2) before anything else
    eval_rows = read_preference_jsonl(spec.eval_data)[: cfg.eval_max_rows] if spec.eval_data else []
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    ckpt = shell.resume_checkpoint
    torch.manual_seed(spec.seed)
    model, tok = load_reward_model(ckpt or spec.model_path)
    render = prompt_renderer(tok, template, cfg.prompt_format, cfg.system_prompt, cfg.prompt_template)
    shell.extra_outputs[Out.PROMPT_FORMAT] = render.describe()
    template = render.template if render.kind == "template" else None  # written into checkpoints for the scorer
    total = num_steps(len(rows), cfg)
    backend = setup_backend(model, OptimConfig(cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, cfg.weight_decay,
                                               cfg.max_grad_norm, cfg.lr_scheduler, cfg.warmup_steps),
                            engine=cfg.engine, zero_stage=cfg.zero_stage, total_steps=total,
                            micro_batch_size=cfg.batch_size, bf16=cfg.bf16)
    if ckpt:
        backend.load_state(ckpt)
    start = shell.resume_step
    shell.begin(start, resumed=ckpt is not None)  # a crashed attempt's later steps are history now
    rm = backend.module

    def batch_scores(batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [r["prompt"] for r in batch] * 2
        responses = [r["chosen"] for r in batch] + [r["rejected"] for r in batch]
        ids, mask = encode_pair_texts(tok, prompts, responses, render, cfg.max_seq_length)  # (2B, T)
        s = _scores(rm, ids.to(backend.device), mask.to(backend.device))  # (2B,)
        return s[: len(batch)], s[len(batch):]

    def held_out(step: int) -> dict[str, float]:
        rm.eval()
        losses, stats = [], []
        with torch.no_grad(), backend.gathered():
            for i in range(0, len(eval_rows), cfg.batch_size):
                c, r = batch_scores(eval_rows[i:i + cfg.batch_size])
                loss, st = bradley_terry_loss(c, r)
                losses.append((float(loss), len(c)))
                stats.append((st["accuracy"], len(c)))
        n = sum(k for _, k in losses)
        m = {"eval/loss": sum(v * k for v, k in losses) / n, "eval/accuracy": sum(v * k for v, k in stats) / n}
        reporter.log_metrics(step, m)
        return m

    def checkpoint(step: int) -> None:
        shell.save_checkpoint(step, lambda folder: write_checkpoint(folder, backend, tok, template=template),
                              keep=cfg.save_total_limit)

    last: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    step = start
    for step in range(start + 1, total + 1):
        t0 = time.perf_counter()
        batch = [rows[i] for i in prompts_for_step(len(rows), cfg.batch_size, step - 1, spec.seed)]
        rm.train()
        c, r = batch_scores(batch)
        loss, stats = bradley_terry_loss(c, r, cfg.center_rewards_coefficient)
        backend.backward(loss)
        grad_norm = backend.step()
        dt = time.perf_counter() - t0
        last = {"loss": loss.item(), "grad_norm": grad_norm, "learning_rate": backend.learning_rate(),
                **stats, "epoch": step * cfg.batch_size / len(rows), "step_time": dt}
        reporter.log_metrics(step, last)
        if eval_rows and cfg.eval_steps and step % cfg.eval_steps == 0:
            eval_metrics = held_out(step)
        reporter.flush()
        shell.step_done(step, total)
        if shell.checkpoint_due(step, total, cfg.save_steps):  # after the progress line: see sft.py
            checkpoint(step)
        if shell.stop_requested:
            return shell.finish(step, stopped=True, last=last, eval_metrics=eval_metrics)
    if eval_rows and (not cfg.eval_steps or step % cfg.eval_steps):
        eval_metrics = held_out(step)
    if not shell.saved:  # resumed at the last step: nothing new to save
        checkpoint(step)
    return shell.finish(step, final=shell.final_model(), last=last, eval_metrics=eval_metrics)
