"""The vLLM rollout engine for GPU workers, and the pure parts around it.

`VLLMEngine` implements rollout.RolloutEngine with a colocated `vllm.LLM` (same process and GPU
as the trainer, TRL's `vllm_mode="colocate"`):

    engine = VLLMEngine(model_path, max_model_len=..., gpu_memory_utilization=0.3)
    roll = engine.generate(prompt_ids, num_generations=G, max_new_tokens=C, temperature=1.0)
    # roll.sampling_logprobs: (N, C) log-probs vLLM sampled with
    ...train step...
    engine.update_weights(named_params=backend.named_full_parameters())   # one parameter at a time

- sleep mode (`enable_sleep_mode=True`): between rollouts the engine sleeps (level 1: weights
  offloaded to CPU, KV cache freed), so the optimizer step has the GPU memory; it wakes the
  weights before a push and the KV cache before generating;
- weights are pushed after every optimisation step, one parameter at a time (under ZeRO-3 each
  one is gathered only while it is copied: peak extra memory is one parameter, not the model),
  renamed to the checkpoint names vLLM's `load_weights` expects (`vllm_param_name`);
- the prefix cache is reset after each push (cached KV blocks of a prompt were computed by the
  old weights);
- the sampled tokens' log-probs come back in `Rollout.sampling_logprobs`, so the trainer can
  report `sampling/importance_sampling_ratio/*` (`importance_sampling_metrics`) and notice stale
  weights (a push that did not land shows as a ratio far from 1 on the first minibatch), and can
  correct for the engine/trainer mismatch with truncated importance sampling
  (`truncated_is_weights`, Yao et al. 2025; TRL's `vllm_importance_sampling_correction`).

This module is the project's only vllm importer, lazily (inside `VLLMEngine`); importing it
costs nothing on a CPU machine. What was and was not run is in docs/vllm.md: on this project's
machines vLLM is not installed, so `VLLMEngine` is exercised against a stand-in `llm` object in
tests/training_backend/test_rollout_vllm.py, and the pure functions here against real tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from training_backend.rollout import Rollout, left_pad

# ------------------------------------------------------------------------------------------------
# Requests and outputs (pure)


def sampling_params_kwargs(*, num_generations: int, max_new_tokens: int, temperature: float = 1.0,
                           top_p: float = 1.0, greedy: bool = False, seed: int | None = None,
                           stop_token_ids: list[int] | None = None) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one rollout call.

    logprobs=0 returns the log-prob of each sampled token only (no top-k alternatives); token ids
    in, token ids out (`detokenize=False`): the trainer decodes with its own tokenizer.
    """
    kw: dict[str, Any] = dict(n=num_generations, max_tokens=max_new_tokens, logprobs=0, detokenize=False,
                              skip_special_tokens=False)
    if greedy:
        kw.update(temperature=0.0, top_p=1.0)
    else:
        kw.update(temperature=temperature, top_p=top_p)
    if seed is not None:
        kw["seed"] = seed
    if stop_token_ids:  # the trainer's stop ids (models.stop_token_ids), whatever vLLM reads from the folder
        kw["stop_token_ids"] = list(stop_token_ids)
    return kw


def build_requests(prompts: list[list[int]]) -> list[dict[str, list[int]]]:
    """vLLM `TokensPrompt`s: the trainer's tokenisation is used as is (no re-tokenising of text)."""
    return [{"prompt_token_ids": list(p)} for p in prompts]


def _sampled_logprob(entry: Any, token: int) -> float:
    """The log-prob of `token` from one position of a CompletionOutput.logprobs (dict token -> Logprob
    or float); NaN when vLLM did not return it."""
    if entry is None:
        return math.nan
    v = entry.get(token) if isinstance(entry, dict) else None
    if v is None:
        return math.nan
    return float(getattr(v, "logprob", v))


def outputs_to_rollout(outputs: list[Any], prompts: list[list[int]], *, pad_token_id: int,
                       eos_token_id: int | list[int]) -> Rollout:
    """vLLM RequestOutputs (one per prompt, each with `.outputs`: n CompletionOutputs carrying
    `token_ids`, `logprobs`, `finish_reason`) -> a prompt-major Rollout with sampling_logprobs.

    A completion that stopped on EOS keeps its EOS token (appended with a NaN log-prob when vLLM
    left it out of token_ids); one stopped by the length limit is `truncated`. `eos_token_id` may
    list several stop ids (models.stop_token_ids): the first is the one appended.
    """
    stops = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if len(outputs) != len(prompts):
        raise ValueError(f"{len(outputs)} outputs for {len(prompts)} prompts")
    G = len(outputs[0].outputs)
    toks: list[list[int]] = []
    lps: list[list[float]] = []
    truncated: list[bool] = []
    for req in outputs:
        if len(req.outputs) != G:
            raise ValueError(f"a prompt has {len(req.outputs)} completions, another {G}")
        for c in req.outputs:
            ids = list(c.token_ids)
            lp = [_sampled_logprob(c.logprobs[t] if c.logprobs is not None and t < len(c.logprobs) else None, tok)
                  for t, tok in enumerate(ids)]
            if c.finish_reason == "stop" and (not ids or ids[-1] not in stops):
                ids.append(stops[0])
                lp.append(math.nan)
            cut = next((t + 1 for t, i in enumerate(ids) if i in stops), None)
            if cut is not None:  # nothing after the first EOS is the completion's
                ids, lp = ids[:cut], lp[:cut]
            toks.append(ids)
            lps.append(lp)
            truncated.append(c.finish_reason == "length")
    N, C = len(toks), max((len(t) for t in toks), default=0)
    comp = torch.full((N, C), pad_token_id, dtype=torch.long)
    mask = torch.zeros((N, C), dtype=torch.long)
    slp = torch.zeros((N, C), dtype=torch.float32)
    for i, (t, lp) in enumerate(zip(toks, lps)):
        comp[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[i, : len(t)] = 1
        slp[i, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    ids, pmask = left_pad(prompts, pad_token_id)  # (B, P)
    return Rollout(prompt_ids=ids.repeat_interleave(G, 0), prompt_mask=pmask.repeat_interleave(G, 0),
                   completion_ids=comp, completion_mask=mask, truncated=torch.tensor(truncated, dtype=torch.bool),
                   sampling_logprobs=slp)


# ------------------------------------------------------------------------------------------------
# Weight names (pure)

# Wrapper prefixes a trainer's parameter names can carry that a checkpoint's do not.
_PREFIXES = ("module.", "_orig_mod.", "base_model.model.")
_INFIXES = ("._checkpoint_wrapped_module", "._fsdp_wrapped_module", "._orig_mod", ".base_layer")
_ADAPTER_MARKERS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", "modules_to_save")


def vllm_param_name(name: str) -> str | None:
    """The HF checkpoint name vLLM's `model.load_weights` expects for a trainer parameter, or None
    for a parameter vLLM does not hold (a LoRA adapter matrix: merge adapters before pushing).

    vLLM maps checkpoint names onto its fused layers itself (q/k/v -> qkv_proj, gate/up ->
    gate_up_proj), exactly as when it reads safetensors; we only undo what wrappers add:
    DeepSpeed/DDP's `module.`, torch.compile's `_orig_mod.`, activation checkpointing's
    `_checkpoint_wrapped_module`, PEFT's `base_model.model.` and `.base_layer`.
    """
    if any(m in name for m in _ADAPTER_MARKERS):
        return None
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    for infix in _INFIXES:
        name = name.replace(infix, "")
    return name


def iter_vllm_weights(named_params: Iterable[tuple[str, torch.Tensor]], *, tied_embeddings: bool = False,
                      dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(vLLM name, tensor) for each parameter, in order, lazily (so a ZeRO-3 gather of one
    parameter is released before the next is gathered). With tied embeddings `lm_head.weight`
    is skipped (vLLM ties it to the embedding itself)."""
    for name, p in named_params:
        target = vllm_param_name(name)
        if target is None or (tied_embeddings and target == "lm_head.weight"):
            continue
        t = p.detach()
        yield target, (t.to(dtype) if dtype is not None and t.dtype != dtype else t)


# ------------------------------------------------------------------------------------------------
# Engine/trainer mismatch (pure)


def importance_sampling_metrics(trainer_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor,
                                mask: torch.Tensor) -> dict[str, float]:
    """TRL's `sampling/*` metrics. trainer_logprobs: (N, C) under the policy that is being updated
    (before the update); sampling_logprobs: (N, C) from the engine; mask: (N, C). Tokens whose
    sampling log-prob is unknown (NaN) are left out. A ratio far from 1 means the engine sampled
    from other weights than the trainer holds (a missed push) or numerics differ (bf16 kernels)."""
    ok = mask.bool() & torch.isfinite(sampling_logprobs)
    if not ok.any():
        return {}
    diff = (trainer_logprobs.detach().float() - sampling_logprobs.float())[ok]
    ratio = torch.exp(diff)
    return {
        "sampling/sampling_logp_difference/mean": float(diff.abs().mean()),
        "sampling/sampling_logp_difference/max": float(diff.abs().max()),
        "sampling/importance_sampling_ratio/min": float(ratio.min()),
        "sampling/importance_sampling_ratio/mean": float(ratio.mean()),
        "sampling/importance_sampling_ratio/max": float(ratio.max()),
    }


def truncated_is_weights(trainer_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
                         cap: float = 2.0) -> torch.Tensor:
    """(N, C) per-token weights min(π_trainer / π_sampler, cap), 1 where unknown, 0 off the mask;
    multiplying the per-token policy-gradient loss by them corrects for sampling with the engine."""
    ratio = torch.exp(trainer_logprobs.detach().float() - sampling_logprobs.float())
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio)).clamp(max=cap)
    return ratio * mask.float()


def weights_look_stale(metrics: dict[str, float], tolerance: float = 0.5) -> bool:
    """True when the mean |log π_trainer − log π_sampler| exceeds `tolerance` nats per token: far
    above bf16 noise (~0.01–0.05 on real models), what a push that did not land looks like."""
    return metrics.get("sampling/sampling_logp_difference/mean", 0.0) > tolerance


# ------------------------------------------------------------------------------------------------
# The engine


class VLLMEngine:
    """A colocated `vllm.LLM` as a RolloutEngine. `llm` and `sampling_params_cls` are for tests
    (a stand-in object); in production both come from vllm."""

    def __init__(self, model_path: str, *, pad_token_id: int, eos_token_id: int | list[int], max_model_len: int = 4096,
                 gpu_memory_utilization: float = 0.3, dtype: str = "bfloat16", tensor_parallel_size: int = 1,
                 enable_sleep_mode: bool = True, tied_embeddings: bool = False, seed: int = 0,
                 llm: Any = None, sampling_params_cls: Any = None):
        self.stop_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.pad_token_id, self.eos_token_id = pad_token_id, self.stop_ids[0]
        self.tied_embeddings = tied_embeddings
        self.sleep_mode = enable_sleep_mode
        self.seed = seed
        self.asleep: set[str] = set()  # what sleep mode has released: "weights", "kv_cache", "scheduling"
        self.pushes = 0
        if llm is None:
            import os

            import vllm

            # The trainer process is the engine process: no extra engine-core process, no Ray;
            # under torchrun/deepspeed each rank runs its own engine over its TP group.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            llm = vllm.LLM(model=model_path, dtype=dtype, max_model_len=max_model_len,
                           gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                           enable_sleep_mode=enable_sleep_mode, enable_prefix_caching=True, seed=seed,
                           distributed_executor_backend="external_launcher",
                           # log-probs after temperature/top-p, i.e. of the distribution sampled from
                           logprobs_mode="processed_logprobs")
            sampling_params_cls = vllm.SamplingParams
        self.llm = llm
        self.sampling_params_cls = sampling_params_cls
        if enable_sleep_mode:
            self.sleep()

    # --- memory
    def sleep(self) -> None:
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)  # level 1: weights to CPU memory, KV cache dropped
            # vLLM 0.32: "wake_up should be called with all tags (or None) before the engine is used
            # again"; waking by tag lets the weights come back (for a push) before the KV cache does.
            self.asleep = {"weights", "kv_cache", "scheduling"}

    def _wake(self, tags: list[str]) -> None:
        todo = [t for t in tags if t in self.asleep]
        if todo:
            self.llm.wake_up(tags=todo)
            self.asleep -= set(todo)

    # --- RolloutEngine
    def generate(self, prompts: list[list[int]], *, num_generations: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False) -> Rollout:
        self._wake(["weights", "kv_cache", "scheduling"])
        params = self.sampling_params_cls(**sampling_params_kwargs(
            num_generations=num_generations, max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=top_p, greedy=greedy, stop_token_ids=self.stop_ids))
        outputs = self.llm.generate(build_requests(prompts), params, use_tqdm=False)
        self.sleep()  # give the memory back to the optimizer step
        return outputs_to_rollout(outputs, prompts, pad_token_id=self.pad_token_id, eos_token_id=self.stop_ids)

    def update_weights(self, model: torch.nn.Module | None = None, *,
                       named_params: Iterable[tuple[str, torch.Tensor]] | None = None) -> int:
        """Push the trainer's weights: `named_params` (e.g. backend.named_full_parameters(), one
        gathered parameter at a time under ZeRO-3) or `model.named_parameters()`. Returns the
        number of tensors pushed. Resets the prefix cache."""
        if named_params is None:
            if model is None:
                raise ValueError("update_weights needs a model or named_params")
            named_params = model.named_parameters()
        self._wake(["weights"])  # the KV cache stays freed until generate
        n = 0
        for name, tensor in iter_vllm_weights(named_params, tied_embeddings=self.tied_embeddings):
            self._load([(name, tensor)])
            n += 1
        self.llm.reset_prefix_cache()
        self.pushes += 1
        return n

    def _load(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        # vLLM ≥ 0.9 runs a function on the model in each worker with `apply_model`; older
        # in-process engines expose the model through the driver worker.
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda model: model.load_weights(weights))
        else:
            self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(weights)
