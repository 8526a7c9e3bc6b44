"""Stage configs: one frozen dataclass per stage kind, and the SPEC.json that launches a stage.

Stdlib only: the web process imports this module to validate launch forms with the trainer's own
dataclasses, so it must never import torch, transformers or deepspeed.

SPEC.json (what `python -m training_backend run SPEC.json` reads)::

    {
      "kind": "grpo",                       # stage kind: a key of STAGE_CONFIGS
      "model_path": "var/tiny-base",        # HF model folder (weights + tokenizer); must exist
      "output_dir": "var/runs/42",          # checkpoints, metrics.jsonl, outputs.json go here
      "train_data": "prompts.jsonl",        # prompt JSONL; relative paths resolve against the spec's folder
      "eval_data": null,                    # optional held-out prompt JSONL
      "seed": 0,
      "config": {"learning_rate": 1e-6, "num_generations": 8, ...}   # fields of the kind's dataclass
    }

Prompt JSONL rows: `{"id": str, "prompt": str, "answer": str, "type"?: "math"|"code"|"general",
"tests"?: [...], "target_lang"?: str}`.

Every config field has a default and `metadata={"help", "r1", "trl"}`: what it does, the value the
DeepSeek-R1 report used (None when the report does not say or it does not apply) and TRL 1.16's
default (None when TRL has no such knob). `spec_fields(kind)` lists them for the launch form.

Kinds: `grpo` (grpo.py), `sft` (sft.py), `rejection_sampling` (rejection.py), `reward_model`
(reward_model.py), `eval` (evaluate.py); __main__.STAGE_MODULES maps each to its `train`. For
`sft` and `rejection_sampling` output, `train_data` is chat JSONL; for `reward_model`, preference
JSONL (training_backend.data describes the three formats). To add a stage kind: write a frozen
dataclass subclassing `StageConfig` with `_field(...)` fields, override `validate()` for the
cross-field rules, register it in `STAGE_CONFIGS` and its module in __main__.STAGE_MODULES.
`parse_spec` does the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple


class ConfigError(ValueError):
    """A spec that cannot run; `errors` maps a field name (or "kind", "config") to a message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class FieldInfo(NamedTuple):
    name: str
    type: str  # "int", "float", "bool", "str", "list[str]", "list[float]", each maybe "| None"
    default: Any
    help: str
    r1: Any
    trl: Any
    choices: tuple | None = None


def _field(default: Any, help: str, *, r1: Any = None, trl: Any = None, choices: tuple | None = None):
    return dataclasses.field(default=default, metadata={"help": help, "r1": r1, "trl": trl, "choices": choices})


@dataclass(frozen=True)
class StageConfig:
    """Base of every stage config. Subclasses add fields and cross-field checks."""

    kind: ClassVar[str] = ""

    def validate(self) -> dict[str, str]:
        """Cross-field rules; returns field -> message (empty when valid)."""
        return {}


# Prompt rendering (training_backend.models): every stage that shows the model a prompt has both.
PROMPT_FORMAT_HELP = ("How prompts are shown to the model: auto = the model folder's r1lab_template.txt, else the "
                      "tokenizer's chat template, else as is; r1_zero = the raw R1-Zero template (no chat markup: GRPO from "
                      "a base model); chat = the tokenizer's chat template with a generation prompt; none = as is.")
SYSTEM_PROMPT_HELP = "System turn put before each prompt when prompts are chat-formatted (empty = none)."
PROMPT_TEMPLATE_HELP = ("The raw template of prompt_format r1_zero, with {prompt} where the question goes (empty = the model "
                        "folder's r1lab_template.txt, else the DeepSeek-R1 report's R1-Zero template).")
PROMPT_FORMAT_CHOICES = ("auto", "r1_zero", "chat", "none")


def _prompt_format_field():
    return _field("auto", PROMPT_FORMAT_HELP, r1=None, trl=None, choices=PROMPT_FORMAT_CHOICES)


def _system_prompt_field():
    return _field("", SYSTEM_PROMPT_HELP, r1=None, trl=None)


def _prompt_template_field():
    return _field("", PROMPT_TEMPLATE_HELP, r1=None, trl=None)


def check_prompt_template(cfg) -> dict[str, str]:
    """A template must take the prompt where `{prompt}` is, and nothing else `str.format` would read."""
    t = getattr(cfg, "prompt_template", "")
    if not t:
        return {}
    try:
        t.format(prompt="")
    except (KeyError, IndexError, ValueError) as exc:
        return {"prompt_template": f"not a template with {{prompt}} only ({type(exc).__name__}: {exc}); write literal braces as {{{{ }}}}"}
    if "{prompt}" not in t:
        return {"prompt_template": "has no {prompt}: the question would not be shown"}
    return {}


@dataclass(frozen=True)
class GRPOConfig(StageConfig):
    """Group Relative Policy Optimization (R1-Zero and R1 stages 2 and 4)."""

    kind: ClassVar[str] = "grpo"

    # --- steps and batch
    max_steps: int = _field(100, "Optimizer steps (one rollout batch each).", r1=8200, trl=None)
    num_generations: int = _field(8, "G: completions sampled per prompt; advantages are relative within these G.", r1=16, trl=8)
    batch_size: int = _field(64, "Completions per step (prompts per step × G); must be divisible by G.", r1=512, trl=None)
    minibatches: int = _field(1, "Optimizer updates per rollout batch (the batch is split into this many; >1 makes later updates off-policy).", r1=16, trl=None)
    num_iterations: int = _field(1, "μ: passes over each rollout batch.", r1=1, trl=1)
    # --- optimisation
    learning_rate: float = _field(1e-6, "Peak AdamW learning rate.", r1=3e-6, trl=1e-6)
    lr_scheduler: str = _field("constant", "Learning-rate schedule after warm-up.", r1=None, trl="linear", choices=("constant", "linear", "cosine"))
    warmup_steps: int = _field(0, "Linear warm-up steps.", r1=None, trl=0)
    adam_beta1: float = _field(0.9, "AdamW β1.", r1=None, trl=0.9)
    adam_beta2: float = _field(0.99, "AdamW β2.", r1=None, trl=0.999)
    weight_decay: float = _field(0.0, "AdamW weight decay.", r1=None, trl=0.0)
    max_grad_norm: float = _field(1.0, "Clip the gradient norm to this (0 = no clipping).", r1=None, trl=1.0)
    # --- GRPO objective
    beta: float = _field(0.04, "KL coefficient to the reference model (k3 estimator); 0 skips the reference model.", r1=0.001, trl=0.0)
    clip_eps: float = _field(0.2, "ε: the ratio is clipped to [1-ε, 1+ε_high].", r1=10.0, trl=0.2)
    clip_eps_high: float | None = _field(None, "ε_high (DAPO clip-higher); None = clip_eps.", r1=None, trl=None)
    loss_type: str = _field("grpo", "Token aggregation: grpo = mean of per-sequence means; bnpo/dapo = token mean over the batch; dr_grpo = sum / (B·T).", r1="grpo", trl="dapo", choices=("grpo", "bnpo", "dapo", "dr_grpo"))
    scale_rewards: bool = _field(True, "Divide advantages by the group std (False = Dr. GRPO).", r1=True, trl=True)
    mask_truncated_completions: bool = _field(False, "Exclude completions that hit max_completion_length from the loss.", r1=None, trl=False)
    ref_sync_steps: int = _field(0, "Copy the policy into the reference model every this many steps (0 = never).", r1=400, trl=512)
    # --- rewards
    reward_funcs: tuple[str, ...] = _field(("accuracy", "format"), "Reward functions (names from training_backend.rewards.REWARD_FUNCS).", r1=["accuracy", "format"], trl=None)
    reward_weights: tuple[float, ...] | None = _field(None, "One weight per reward function; None = all 1.", r1=None, trl=None)
    reward_model_path: str | None = _field(None, "Reward-model folder (a `reward_model` stage's final_model) scoring the `reward_model` reward.", r1=None, trl=None)
    reward_model_types: tuple[str, ...] = _field(("general",), "Prompt types (the prompt rows' `type`) the reward model scores; other rows get None from it (R1: general prompts).", r1=["general"], trl=None)
    allow_unsandboxed_code: bool = _field(False, "Run the code reward (and code rows' tests in evals) even where the code sandbox is not full (`python -m training_backend sandbox-check`): model code then reaches whatever the sandbox fails to hide. Off, such a stage exits 2 at start.", r1=None, trl=None)
    # --- generation
    prompt_format: str = _prompt_format_field()
    system_prompt: str = _system_prompt_field()
    prompt_template: str = _prompt_template_field()
    max_prompt_length: int = _field(256, "Prompts are left-truncated to this many tokens.", r1=None, trl=None)
    max_completion_length: int = _field(256, "Maximum new tokens per completion.", r1=32768, trl=512)
    temperature: float = _field(1.0, "Sampling temperature.", r1=1.0, trl=1.0)
    top_p: float = _field(1.0, "Nucleus sampling threshold.", r1=None, trl=1.0)
    # --- engine
    rollout_engine: str = _field("hf", "Rollout engine: HF generate (CPU, tests) or a colocated vLLM engine (GPU workers; "
                                       "requirements-gpu.txt), which gets the trainer's weights after every step.",
                                 r1=None, trl="hf (use_vllm=False)", choices=("hf", "vllm"))
    vllm_gpu_memory_utilization: float = _field(0.3, "Share of GPU memory the colocated vLLM engine may take.",
                                                r1=None, trl=0.3)
    engine: str = _field("deepspeed", "Training engine: DeepSpeed or the plain torch loop.", r1=None, trl=None, choices=("deepspeed", "torch"))
    zero_stage: int = _field(2, "DeepSpeed ZeRO stage.", r1=None, trl=None, choices=(0, 1, 2, 3))
    bf16: bool = _field(False, "Train in bfloat16 under DeepSpeed: bf16 weights, activations and gradients, fp32 master weights and optimizer state (half the memory of activations, the GPU's bf16 tensor cores). Needs engine=deepspeed and a CUDA device with bf16 (Ampere or newer); off, everything is fp32.", r1=None, trl=True)
    torch_threads: int = _field(0, "torch.set_num_threads (0 = torch's default).", r1=None, trl=None)
    # --- checkpoints, logging, eval
    save_steps: int = _field(50, "Checkpoint every this many steps (and always at the end).", r1=None, trl=500)
    save_total_limit: int = _field(2, "Keep at most this many step checkpoints (0 = all).", r1=None, trl=None)
    log_samples: int = _field(16, "Rollouts per step sent to the reporter (-1 = all).", r1=None, trl=None)
    eval_steps: int = _field(0, "Evaluate greedy accuracy on eval_data every this many steps (0 = only at the end, if eval_data).", r1=None, trl=None)
    eval_max_prompts: int = _field(64, "At most this many eval prompts.", r1=None, trl=None)
    eval_num_samples: int = _field(0, "k samples per eval prompt (temperature 0.6, top-p 0.95) for eval/pass@1 and eval/cons@k, besides the greedy accuracy (0 = greedy only).", r1=16, trl=None)

    def validate(self) -> dict[str, str]:
        e: dict[str, str] = {}
        if self.num_generations < 2:
            e["num_generations"] = f"G must be at least 2 (a group of {self.num_generations} has no relative advantage)"
        elif self.batch_size % self.num_generations:
            e["batch_size"] = f"batch_size {self.batch_size} is not divisible by num_generations {self.num_generations}"
        if self.batch_size < 1:
            e["batch_size"] = "must be at least 1"
        elif self.minibatches < 1 or self.batch_size % self.minibatches:
            e["minibatches"] = f"must be ≥ 1 and divide batch_size {self.batch_size}"
        for name in ("max_steps", "num_iterations", "max_completion_length", "max_prompt_length"):
            if getattr(self, name) < 1:
                e[name] = "must be at least 1"
        for name in ("learning_rate", "beta", "weight_decay", "max_grad_norm", "warmup_steps", "save_steps",
                     "save_total_limit", "eval_steps", "ref_sync_steps", "torch_threads", "eval_num_samples"):
            if getattr(self, name) < 0:
                e[name] = f"must not be negative (got {getattr(self, name)})"
        if self.clip_eps <= 0:
            e["clip_eps"] = "must be positive"
        if self.clip_eps_high is not None and self.clip_eps_high <= 0:
            e["clip_eps_high"] = "must be positive"
        if not 0 < self.temperature:
            e["temperature"] = "must be positive"
        if not 0 < self.top_p <= 1:
            e["top_p"] = "must be in (0, 1]"
        if not 0 < self.vllm_gpu_memory_utilization < 1:
            e["vllm_gpu_memory_utilization"] = "must be in (0, 1)"
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            e["adam_beta1" if not 0 <= self.adam_beta1 < 1 else "adam_beta2"] = "must be in [0, 1)"
        if not self.reward_funcs:
            e["reward_funcs"] = "at least one reward function is needed"
        else:
            known = _reward_names()
            unknown = [n for n in self.reward_funcs if known is not None and n not in known]
            if unknown:
                e["reward_funcs"] = f"unknown reward {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            e["reward_weights"] = f"{len(self.reward_weights)} weights for {len(self.reward_funcs)} reward functions"
        if "reward_model" in self.reward_funcs and not self.reward_model_path:
            e["reward_model_path"] = "required when reward_funcs has 'reward_model'"
        e.update(_check_bf16(self))
        return e


@dataclass(frozen=True)
class _SupervisedConfig(StageConfig):
    """Fields shared by the stages that fit a fixed dataset (SFT, reward model)."""

    # --- steps and batch
    num_epochs: float = _field(2.0, "Passes over the training set (used when max_steps is 0).", r1=2, trl=3)
    max_steps: int = _field(0, "Optimizer steps; 0 = derived from num_epochs.", r1=None, trl=-1)
    batch_size: int = _field(8, "Rows per optimizer step.", r1=None, trl=8)
    max_seq_length: int = _field(512, "Rows are cut to this many tokens (the prompt is kept, the response is cut).", r1=None, trl=1024)
    prompt_format: str = _prompt_format_field()
    system_prompt: str = _system_prompt_field()
    prompt_template: str = _prompt_template_field()
    # --- optimisation
    learning_rate: float = _field(2e-5, "Peak AdamW learning rate.", r1=None, trl=2e-5)
    lr_scheduler: str = _field("cosine", "Learning-rate schedule after warm-up.", r1=None, trl="linear", choices=("constant", "linear", "cosine"))
    warmup_steps: int = _field(0, "Linear warm-up steps.", r1=None, trl=0)
    adam_beta1: float = _field(0.9, "AdamW β1.", r1=None, trl=0.9)
    adam_beta2: float = _field(0.999, "AdamW β2.", r1=None, trl=0.999)
    weight_decay: float = _field(0.0, "AdamW weight decay.", r1=None, trl=0.0)
    max_grad_norm: float = _field(1.0, "Clip the gradient norm to this (0 = no clipping).", r1=None, trl=1.0)
    # --- engine
    engine: str = _field("deepspeed", "Training engine: DeepSpeed or the plain torch loop.", r1=None, trl=None, choices=("deepspeed", "torch"))
    zero_stage: int = _field(2, "DeepSpeed ZeRO stage.", r1=None, trl=None, choices=(0, 1, 2, 3))
    bf16: bool = _field(False, "Train in bfloat16 under DeepSpeed: bf16 weights, activations and gradients, fp32 master weights and optimizer state (half the memory of activations, the GPU's bf16 tensor cores). Needs engine=deepspeed and a CUDA device with bf16 (Ampere or newer); off, everything is fp32.", r1=None, trl=True)
    torch_threads: int = _field(0, "torch.set_num_threads (0 = torch's default).", r1=None, trl=None)
    # --- checkpoints, logging, held-out
    save_steps: int = _field(50, "Checkpoint every this many steps (and always at the end).", r1=None, trl=500)
    save_total_limit: int = _field(2, "Keep at most this many step checkpoints (0 = all).", r1=None, trl=None)
    eval_steps: int = _field(0, "Held-out metrics on eval_data every this many steps (0 = only at the end, if eval_data).", r1=None, trl=None)
    eval_max_rows: int = _field(256, "At most this many held-out rows.", r1=None, trl=None)

    def validate(self) -> dict[str, str]:
        e: dict[str, str] = {}
        for name in ("batch_size", "max_seq_length"):
            if getattr(self, name) < 1:
                e[name] = "must be at least 1"
        for name in ("max_steps", "learning_rate", "warmup_steps", "weight_decay", "max_grad_norm", "torch_threads",
                     "save_total_limit", "eval_steps", "eval_max_rows"):
            if getattr(self, name) < 0:
                e[name] = f"must not be negative (got {getattr(self, name)})"
        if self.max_steps == 0 and self.num_epochs <= 0:
            e["num_epochs"] = "must be positive when max_steps is 0"
        if self.save_steps < 1:
            e["save_steps"] = "must be at least 1"
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            e["adam_beta1" if not 0 <= self.adam_beta1 < 1 else "adam_beta2"] = "must be in [0, 1)"
        e.update(_check_bf16(self))
        return e


@dataclass(frozen=True)
class SFTConfig(_SupervisedConfig):
    """Supervised fine-tuning on chat JSONL, loss on assistant tokens only: R1's cold start (stage 1),
    the SFT on rejection-sampled + general data (stage 3), and distillation (a student's SFT on a
    teacher's rejection-sampled set). eval_data is chat JSONL too: held-out loss, and pass@1 /
    cons@k on its prompts (gold = the row's `answer`, else the reference response's answer)."""

    kind: ClassVar[str] = "sft"

    log_samples: int = _field(4, "Held-out generations per eval sent to the reporter (-1 = all).", r1=None, trl=None)
    eval_num_samples: int = _field(4, "k completions per held-out prompt for eval/pass@1 and eval/cons@k (0 = held-out loss only).", r1=16, trl=None)
    eval_max_prompts: int = _field(64, "At most this many held-out prompts are generated for.", r1=None, trl=None)
    eval_temperature: float = _field(0.6, "Sampling temperature of the held-out generations.", r1=0.6, trl=None)
    eval_top_p: float = _field(0.95, "Nucleus threshold of the held-out generations.", r1=0.95, trl=None)
    eval_max_new_tokens: int = _field(256, "Maximum new tokens per held-out generation.", r1=32768, trl=None)

    def validate(self) -> dict[str, str]:
        e = super().validate()
        if self.eval_num_samples < 0 or self.eval_max_prompts < 0:
            e["eval_num_samples" if self.eval_num_samples < 0 else "eval_max_prompts"] = "must not be negative"
        if self.eval_temperature <= 0:
            e["eval_temperature"] = "must be positive"
        if not 0 < self.eval_top_p <= 1:
            e["eval_top_p"] = "must be in (0, 1]"
        if self.eval_max_new_tokens < 1:
            e["eval_max_new_tokens"] = "must be at least 1"
        return e


@dataclass(frozen=True)
class RewardModelConfig(_SupervisedConfig):
    """A Bradley–Terry reward model (a sequence-classification head on the base) trained on
    `{"prompt", "chosen", "rejected"}` pairs: the preference reward of R1's all-scenario RL.
    eval_data is preference JSONL too (held-out loss and pairwise accuracy)."""

    kind: ClassVar[str] = "reward_model"

    learning_rate: float = _field(1e-4, "Peak AdamW learning rate.", r1=None, trl=None)
    center_rewards_coefficient: float = _field(0.0, "Weight of the (r_chosen + r_rejected)² penalty that keeps scores centred at 0 (0 = off).", r1=None, trl=None)


@dataclass(frozen=True)
class RejectionSamplingConfig(StageConfig):
    """R1 stage 3's data generation: sample n completions per prompt from a checkpoint, keep those
    that pass every filter (format → correct → language → readability → reward → near-duplicates
    → at most keep_per_prompt), write a chat JSONL with provenance plus the funnel."""

    kind: ClassVar[str] = "rejection_sampling"

    num_samples: int = _field(8, "n: completions sampled per prompt.", r1=None, trl=None)
    temperature: float = _field(1.0, "Sampling temperature.", r1=None, trl=None)
    top_p: float = _field(0.95, "Nucleus sampling threshold.", r1=None, trl=None)
    max_new_tokens: int = _field(256, "Maximum new tokens per completion.", r1=32768, trl=None)
    prompt_format: str = _prompt_format_field()
    system_prompt: str = _system_prompt_field()
    prompt_template: str = _prompt_template_field()
    max_prompt_length: int = _field(256, "Prompts are left-truncated to this many tokens.", r1=None, trl=None)
    prompts_per_batch: int = _field(16, "Prompts per generate call (one progress step).", r1=None, trl=None)
    max_prompts: int = _field(0, "Sample from at most this many prompts (0 = all).", r1=None, trl=None)
    # --- filters, in order
    target_lang: str = _field("en", "CoT language for rows without a target_lang column.", r1="en", trl=None, choices=("en", "zh"))
    min_language_consistency: float = _field(0.95, "Drop completions whose CoT has a smaller share of target-language words.", r1=None, trl=None)
    max_paragraph_chars: int = _field(2000, "Drop completions whose CoT has a paragraph longer than this (R1: no long paragraphs).", r1=None, trl=None)
    allow_code_in_cot: bool = _field(False, "Keep CoTs that contain ``` code blocks (R1 dropped them).", r1=False, trl=None)
    allow_unsandboxed_code: bool = _field(False, "Score rows with `tests` even where the code sandbox is not full (`python -m training_backend sandbox-check`): model code then reaches whatever the sandbox fails to hide. Off, such a stage exits 2 when it would run model code.", r1=None, trl=None)
    reward_funcs: tuple[str, ...] = _field(("accuracy", "format", "language_consistency"), "Rewards summed into the total that min_reward thresholds (and recorded per row).", r1=None, trl=None)
    reward_weights: tuple[float, ...] | None = _field(None, "One weight per reward function; None = all 1.", r1=None, trl=None)
    min_reward: float = _field(0.0, "Drop completions whose total reward is below this.", r1=None, trl=None)
    keep_per_prompt: int = _field(2, "At most this many completions kept per prompt (highest reward, then shortest, first).", r1=None, trl=None)
    dedupe_threshold: float = _field(0.9, "Drop a completion whose CoT word-n-gram Jaccard similarity to one already kept for its prompt is at least this (1.0 = exact duplicates only).", r1=None, trl=None)
    dedupe_ngram: int = _field(3, "n of the word n-grams compared for near-duplicates.", r1=None, trl=None)
    # --- general data
    general_data: str | None = _field(None, "Chat JSONL of general (non-reasoning) data mixed in; a relative path resolves against the working directory.", r1=None, trl=None)
    general_ratio: float = _field(0.0, "General rows added per kept reasoning row (R1: ≈200k / 600k ≈ 0.33); capped by the file's size.", r1=0.33, trl=None)
    torch_threads: int = _field(0, "torch.set_num_threads (0 = torch's default).", r1=None, trl=None)
    log_samples: int = _field(8, "Kept rows sent to the reporter as samples (-1 = all).", r1=None, trl=None)

    def validate(self) -> dict[str, str]:
        e: dict[str, str] = {}
        for name in ("num_samples", "max_new_tokens", "max_prompt_length", "prompts_per_batch", "keep_per_prompt", "dedupe_ngram",
                     "max_paragraph_chars"):
            if getattr(self, name) < 1:
                e[name] = "must be at least 1"
        for name in ("max_prompts", "general_ratio", "torch_threads"):
            if getattr(self, name) < 0:
                e[name] = "must not be negative"
        if self.temperature <= 0:
            e["temperature"] = "must be positive"
        if not 0 < self.top_p <= 1:
            e["top_p"] = "must be in (0, 1]"
        for name in ("min_language_consistency", "dedupe_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                e[name] = "must be in [0, 1]"
        if self.general_ratio > 0 and not self.general_data:
            e["general_data"] = "required when general_ratio > 0"
        e.update(_check_rewards(self.reward_funcs, self.reward_weights))
        if "reward_model" in self.reward_funcs:
            e["reward_funcs"] = "'reward_model' is for all-scenario GRPO; rejection sampling uses rule rewards"
        return e


@dataclass(frozen=True)
class EvalConfig(StageConfig):
    """pass@1 as the mean correctness over k samples per prompt, cons@k majority vote (equivalent
    answers counted together), mean response length, reflection rate: R1's evaluation protocol."""

    kind: ClassVar[str] = "eval"

    num_samples: int = _field(16, "k: completions sampled per prompt.", r1=64, trl=None)
    temperature: float = _field(0.6, "Sampling temperature.", r1=0.6, trl=None)
    top_p: float = _field(0.95, "Nucleus sampling threshold.", r1=0.95, trl=None)
    max_new_tokens: int = _field(256, "Maximum new tokens per completion.", r1=32768, trl=None)
    prompt_format: str = _prompt_format_field()
    system_prompt: str = _system_prompt_field()
    prompt_template: str = _prompt_template_field()
    max_prompt_length: int = _field(256, "Prompts are left-truncated to this many tokens.", r1=None, trl=None)
    prompts_per_batch: int = _field(16, "Prompts per generate call (one progress step).", r1=None, trl=None)
    max_prompts: int = _field(0, "Evaluate at most this many prompts (0 = all).", r1=None, trl=None)
    allow_unsandboxed_code: bool = _field(False, "Score rows with `tests` even where the code sandbox is not full (`python -m training_backend sandbox-check`): model code then reaches whatever the sandbox fails to hide. Off, such a stage exits 2 when it would run model code.", r1=None, trl=None)
    torch_threads: int = _field(0, "torch.set_num_threads (0 = torch's default).", r1=None, trl=None)
    log_samples: int = _field(16, "Completions sent to the reporter as samples (-1 = all).", r1=None, trl=None)

    def validate(self) -> dict[str, str]:
        e: dict[str, str] = {}
        for name in ("num_samples", "max_new_tokens", "max_prompt_length", "prompts_per_batch"):
            if getattr(self, name) < 1:
                e[name] = "must be at least 1"
        for name in ("max_prompts", "torch_threads"):
            if getattr(self, name) < 0:
                e[name] = "must not be negative"
        if self.temperature <= 0:
            e["temperature"] = "must be positive"
        if not 0 < self.top_p <= 1:
            e["top_p"] = "must be in (0, 1]"
        return e


def _check_bf16(cfg) -> dict[str, str]:
    # The torch loop has no mixed precision; DeepSpeed's bf16 mode keeps fp32 master weights.
    # (Whether the machine has a CUDA device is checked when the stage starts: distributed.py.)
    if cfg.bf16 and cfg.engine != "deepspeed":
        return {"bf16": "needs engine=deepspeed (the torch loop trains in fp32)"}
    return {}


def _check_rewards(funcs: tuple[str, ...], weights: tuple[float, ...] | None) -> dict[str, str]:
    e: dict[str, str] = {}
    known = _reward_names()
    unknown = [n for n in funcs if known is not None and n not in known]
    if not funcs:
        e["reward_funcs"] = "at least one reward function is needed"
    elif unknown:
        e["reward_funcs"] = f"unknown reward {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
    if weights is not None and len(weights) != len(funcs):
        e["reward_weights"] = f"{len(weights)} weights for {len(funcs)} reward functions"
    return e


STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    "grpo": GRPOConfig, "sft": SFTConfig, "rejection_sampling": RejectionSamplingConfig,
    "reward_model": RewardModelConfig, "eval": EvalConfig,
}


@dataclass(frozen=True)
class StageSpec:
    """A parsed SPEC.json: what to train, from what, on what, into where."""

    kind: str
    model_path: str
    output_dir: str
    train_data: str
    config: StageConfig
    eval_data: str | None = None
    seed: int = 0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model_path": self.model_path, "output_dir": self.output_dir,
                "train_data": self.train_data, "eval_data": self.eval_data, "seed": self.seed,
                "config": config_to_dict(self.config)}


def _reward_names() -> set[str] | None:
    """Names of the reward functions, imported lazily (rewards import no torch)."""
    try:
        from training_backend.rewards import REWARD_FUNCS
    except ImportError:  # rewards package not installed alongside (web-only checkout)
        return None
    return set(REWARD_FUNCS)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " | None"
    if origin is tuple:
        return f"list[{typing.get_args(tp)[0].__name__}]"
    return tp.__name__


def _coerce(value: Any, tp: Any) -> Any:
    """JSON value -> field type; raises ValueError with a readable message."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _coerce(value, [a for a in typing.get_args(tp) if a is not type(None)][0])
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    raise ValueError(f"unsupported type {tp}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def spec_fields(kind: str) -> list[FieldInfo]:
    """The fields of a stage kind's config, in declaration order, for the launch form."""
    if kind not in STAGE_CONFIGS:
        raise ConfigError({"kind": f"unknown stage kind {kind!r}; known: {', '.join(STAGE_CONFIGS)}"})
    cls = STAGE_CONFIGS[kind]
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        out.append(FieldInfo(f.name, _type_name(hints[f.name]), f.default, m["help"], m["r1"], m["trl"], m["choices"]))
    return out


def parse_config(kind: str, d: dict) -> StageConfig:
    """The config dataclass for `kind` from a JSON dict; ConfigError with one message per bad field."""
    if kind not in STAGE_CONFIGS:
        raise ConfigError({"kind": f"unknown stage kind {kind!r}; known: {', '.join(STAGE_CONFIGS)}"})
    if not isinstance(d, dict):
        raise ConfigError({"config": "must be a JSON object"})
    cls = STAGE_CONFIGS[kind]
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for k, v in d.items():
        if k not in fields:
            errors[k] = f"unknown field for {kind!r}"
            continue
        try:
            values[k] = _coerce(v, hints[k])
        except ValueError as exc:
            errors[k] = str(exc)
            continue
        choices = fields[k].metadata["choices"]
        if choices and values[k] not in choices:
            errors[k] = f"must be one of {', '.join(map(repr, choices))}, got {v!r}"
    if errors:
        raise ConfigError(errors)
    cfg = cls(**values)
    errors = {**check_prompt_template(cfg), **cfg.validate()}
    if errors:
        raise ConfigError(errors)
    return cfg


def config_to_dict(cfg: StageConfig) -> dict:
    return {f.name: (list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v) for f in dataclasses.fields(cfg)}


def parse_spec(d: dict, *, base_dir: str | os.PathLike | None = None, check_paths: bool = True) -> StageSpec:
    """A StageSpec from a SPEC.json dict. Relative paths resolve against `base_dir` when given.

    Raises ConfigError carrying every problem at once (field -> message); config fields are
    reported under their own names, spec keys under theirs.
    """
    if not isinstance(d, dict):
        raise ConfigError({"spec": "must be a JSON object"})
    errors: dict[str, str] = {}
    known = {"kind", "model_path", "output_dir", "train_data", "eval_data", "seed", "config"}
    for k in d:
        if k not in known:
            errors[k] = "unknown spec key"
    kind = d.get("kind")
    if kind not in STAGE_CONFIGS:
        errors["kind"] = f"unknown stage kind {kind!r}; known: {', '.join(STAGE_CONFIGS)}"

    def path(key: str, *, required: bool, must_exist: bool) -> str | None:
        v = d.get(key)
        if v is None:
            if required:
                errors[key] = "required"
            return None
        if not isinstance(v, str) or not v:
            errors[key] = f"expected a path string, got {v!r}"
            return None
        p = Path(v)
        if base_dir is not None and not p.is_absolute():
            p = Path(base_dir) / p
        if check_paths and must_exist and not p.exists():
            errors[key] = f"{str(p)!r} does not exist"
        return str(p)

    model_path = path("model_path", required=True, must_exist=True)
    output_dir = path("output_dir", required=True, must_exist=False)
    train_data = path("train_data", required=True, must_exist=True)
    eval_data = path("eval_data", required=False, must_exist=True)
    seed = d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        errors["seed"] = f"expected a non-negative integer, got {seed!r}"
    cfg = None
    if kind in STAGE_CONFIGS:
        try:
            cfg = parse_config(kind, d.get("config", {}) or {})
        except ConfigError as exc:
            errors.update(exc.errors)
    if errors:
        raise ConfigError(errors)
    return StageSpec(kind=kind, model_path=model_path, output_dir=output_dir, train_data=train_data,
                     config=cfg, eval_data=eval_data, seed=seed)


def load_spec(path: str | os.PathLike, *, check_paths: bool = True) -> StageSpec:
    """Read and parse a SPEC.json file; relative paths in it resolve against its folder."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError({"spec": f"{str(p)!r} does not exist"}) from None
    except json.JSONDecodeError as exc:
        raise ConfigError({"spec": f"not valid JSON: {exc}"}) from None
    return parse_spec(d, base_dir=p.parent, check_paths=check_paths)
