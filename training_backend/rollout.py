"""Rollout engines: turn prompts into sampled completions for the trainer.

`RolloutEngine` is the interface the GRPO loop uses (`generate`, `update_weights`); it is kept
apart from the trainer (verl's split) so that a faster engine can replace it without touching the
loop. Only `HFGenerateEngine` (a `generate`-equivalent sampling loop on the policy itself, CPU or
one GPU) is here. The vLLM engine for GPU workers (`VLLMEngine`) lives in rollout_vllm.py, the project's only
vllm importer, and is loaded from here on first use (`from training_backend.rollout import
VLLMEngine`), so that importing this module never touches vllm.

What the HF engine does to waste less (measured in benchmarks/grpo_step.py):
- its own sampling loop around the model's forward instead of `generate`, drawing exactly what
  `generate` draws (same processors, one `torch.multinomial` over all rows per token, finished
  rows padded, stop when every row has emitted EOS): tests/training_backend/test_rollout.py checks
  token-for-token equality with `generate` for one seed;
- each prompt is prefilled once and its KV cache repeated G times (`generate` prefills the G
  copies), into a preallocated (static) cache when the model's layers allow it (no per-token
  concatenation of the whole cache);
- prompts are tokenised and left-padded once per step;
- completions come back right-padded and trimmed to the longest one, so the training forward
  pass never sees all-padding columns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Sequence

import torch


@dataclass
class Rollout:
    """One step's sampled completions; rows are prompt-major (a prompt's G completions contiguous)."""

    prompt_ids: torch.Tensor  # (N, P) left-padded prompt tokens, N = num_prompts · G
    prompt_mask: torch.Tensor  # (N, P) 1 on real prompt tokens
    completion_ids: torch.Tensor  # (N, C) right-padded sampled tokens, EOS included when emitted
    completion_mask: torch.Tensor  # (N, C) 1 on sampled tokens up to and including EOS
    truncated: torch.Tensor  # (N,) bool: hit max_new_tokens without EOS
    sampling_logprobs: torch.Tensor | None = None  # (N, C) log-probs the engine sampled with (vLLM); None = HF

    @property
    def lengths(self) -> torch.Tensor:  # (N,)
        return self.completion_mask.sum(1)

    def to(self, device: torch.device) -> "Rollout":
        """The same rollout on `device` (the trainer's), wherever the engine produced it."""
        moved = {f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                 for f in dataclasses.fields(self)}
        return Rollout(**moved)


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], *, num_generations: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False) -> Rollout:
        """Sample `num_generations` completions for each tokenised prompt."""

    def update_weights(self, model: torch.nn.Module) -> None:
        """Make the next `generate` sample from `model`'s current weights."""


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, mask), both (B, P), left-padded."""
    P = max(map(len, prompts))
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p):] = 1
    return ids, mask


def cache_kwarg(model: torch.nn.Module) -> str:
    """The name under which `model.forward` takes a KV cache: `cache` from transformers 5.x
    (`past_key_values` is deprecated there), `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class HFGenerateEngine:
    """Samples from the policy module itself (shared weights), drawing what transformers `generate`
    would: temperature, top-p, no top-k."""

    def __init__(self, model: torch.nn.Module, *, pad_token_id: int, eos_token_id: int | Sequence[int]):
        """`eos_token_id`: one id or several (models.stop_token_ids): a completion ends at the first."""
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.eos_token_id = self.eos_token_ids[0]

    def update_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # same module object: nothing to copy

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], *, num_generations: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False) -> Rollout:
        G = num_generations
        ids, mask = left_pad(prompts, self.pad_token_id)  # (B, P)
        device = next(self.model.parameters()).device  # the rollout lives where the policy does
        ids, mask = ids.to(device), mask.to(device)
        was_training = self.model.training
        self.model.eval()
        try:
            comp = self._sample(ids, mask, G, max_new_tokens, temperature, top_p, greedy)  # (N, steps)
        finally:
            if was_training:
                self.model.train()
        is_eos = torch.isin(comp, torch.tensor(self.eos_token_ids, device=comp.device))
        # 1 up to and including the first EOS; the loop pads after it
        before_eos = (is_eos.cumsum(1) - is_eos.long()) == 0
        comp_mask = before_eos.long()
        truncated = ~is_eos.any(1)
        C = int(comp_mask.sum(1).max()) if comp.numel() else 0
        return Rollout(
            prompt_ids=ids.repeat_interleave(G, 0), prompt_mask=mask.repeat_interleave(G, 0),
            completion_ids=comp[:, :C].masked_fill(comp_mask[:, :C] == 0, self.pad_token_id),
            completion_mask=comp_mask[:, :C], truncated=truncated,
        )

    def _sample(self, ids: torch.Tensor, mask: torch.Tensor, G: int, max_new_tokens: int, temperature: float,
                top_p: float, greedy: bool) -> torch.Tensor:
        """transformers' `_sample` loop, without its per-token machinery: (B, P) prompts -> (N, steps)
        tokens, N = B·G prompt-major, pad after EOS, steps <= max_new_tokens."""
        from transformers import DynamicCache, StaticCache
        from transformers.cache_utils import DynamicLayer
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        model = self.model
        B, P = ids.shape
        N = B * G
        if max_new_tokens <= 0:
            return ids.new_zeros((N, 0))
        # the processors `generate` builds for these settings, in its order
        warpers = [] if greedy else (([TemperatureLogitsWarper(temperature)] if temperature != 1.0 else [])
                                     + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else []))
        # positions as `generate` makes them: left padding gets 0, real tokens count from 0
        pos = (mask.cumsum(1) - 1).masked_fill(mask == 0, 0)  # (B, P)
        kw = cache_kwarg(model)
        prefix = DynamicCache(config=model.config)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **{kw: prefix})
        logits = out.logits[:, -1].float().repeat_interleave(G, 0)  # (N, V)
        del out
        # the prompt's keys/values, G copies: into a preallocated cache when every layer is a plain
        # (full-attention) one, else the dynamic cache itself, repeated
        if getattr(model, "_can_compile_fullgraph", False) and all(type(layer) is DynamicLayer for layer in prefix.layers):
            cache = StaticCache(config=model.config, max_cache_len=P + max_new_tokens)
            for i, layer in enumerate(prefix.layers):
                cache.update(layer.keys.repeat_interleave(G, 0), layer.values.repeat_interleave(G, 0), i)
            del prefix
        else:
            cache = prefix
            cache.batch_repeat_interleave(G)
        attn = torch.cat([mask.repeat_interleave(G, 0), mask.new_ones((N, max_new_tokens))], 1)  # (N, P + T)
        next_pos = pos[:, -1:].repeat_interleave(G, 0) + 1  # (N, 1)
        unfinished = torch.ones(N, dtype=torch.bool, device=ids.device)
        stops = torch.tensor(self.eos_token_ids, device=ids.device)
        tokens = []
        for t in range(max_new_tokens):
            if greedy:
                nxt = logits.argmax(-1)
            else:
                for w in warpers:
                    logits = w(None, logits)
                nxt = torch.multinomial(torch.softmax(logits, -1), num_samples=1).squeeze(1)  # (N,)
            nxt = nxt.masked_fill(~unfinished, self.pad_token_id)
            tokens.append(nxt)
            unfinished &= ~torch.isin(nxt, stops)
            if t + 1 == max_new_tokens or not unfinished.any():
                break
            out = model(input_ids=nxt[:, None], attention_mask=attn[:, : P + t + 1], position_ids=next_pos + t,
                        use_cache=True, **{kw: cache})
            logits = out.logits[:, -1].float()  # (N, V)
            del out
        return torch.stack(tokens, 1)  # (N, steps)


def __getattr__(name: str):
    # The vLLM engine is imported on first use only: vllm is a GPU-worker dependency.
    if name == "VLLMEngine":
        from training_backend.rollout_vllm import VLLMEngine

        return VLLMEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
