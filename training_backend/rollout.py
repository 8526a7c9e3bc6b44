"""Rollout engines: turn prompts into sampled completions for the trainer.

`RolloutEngine` is the interface the GRPO loop uses (`generate`, `update_weights`); it is kept
apart from the trainer (verl's split) so that a faster engine can replace it without touching the
loop. Only `HFGenerateEngine` (transformers `generate` on the policy itself, CPU or one GPU) is
here. The vLLM engine for GPU workers (`VLLMEngine`) lives in rollout_vllm.py, the project's only
vllm importer, and is loaded from here on first use (`from training_backend.rollout import
VLLMEngine`), so that importing this module never touches vllm.

What the HF engine does to waste less (measured in benchmarks/grpo_step.py):
- prompts are tokenised and left-padded once per step (G copies made by `generate`);
- sampling runs with the KV cache and stops as soon as every sequence has emitted EOS;
- completions come back right-padded and trimmed to the longest one, so the training forward
  pass never sees all-padding columns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

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


class HFGenerateEngine:
    """Samples with transformers `generate` on the policy module itself (shared weights)."""

    def __init__(self, model: torch.nn.Module, *, pad_token_id: int, eos_token_id: int):
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id

    def update_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # same module object: nothing to copy

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], *, num_generations: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False) -> Rollout:
        from transformers import GenerationConfig

        G = num_generations
        ids, mask = left_pad(prompts, self.pad_token_id)  # (B, P)
        device = next(self.model.parameters()).device  # the rollout lives where the policy does
        ids, mask = ids.to(device), mask.to(device)
        was_training = self.model.training
        self.model.eval()
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=not greedy, temperature=temperature if not greedy else None,
            top_p=top_p if not greedy and top_p < 1 else None, top_k=None,
            num_return_sequences=G, pad_token_id=self.pad_token_id, eos_token_id=self.eos_token_id,
        )
        out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)  # (B·G, P + C)
        if was_training:
            self.model.train()
        comp = out[:, ids.shape[1]:]  # (N, C)
        is_eos = comp == self.eos_token_id
        # 1 up to and including the first EOS; generate pads after it
        before_eos = (is_eos.cumsum(1) - is_eos.long()) == 0
        comp_mask = before_eos.long()
        truncated = ~is_eos.any(1)
        C = int(comp_mask.sum(1).max().item()) if comp.numel() else 0
        return Rollout(
            prompt_ids=ids.repeat_interleave(G, 0), prompt_mask=mask.repeat_interleave(G, 0),
            completion_ids=comp[:, :C].masked_fill(comp_mask[:, :C] == 0, self.pad_token_id),
            completion_mask=comp_mask[:, :C], truncated=truncated,
        )


def __getattr__(name: str):
    # The vLLM engine is imported on first use only: vllm is a GPU-worker dependency.
    if name == "VLLMEngine":
        from training_backend.rollout_vllm import VLLMEngine

        return VLLMEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
