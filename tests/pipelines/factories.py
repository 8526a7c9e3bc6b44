"""Factories and helpers for the pipelines tests."""
from __future__ import annotations

import json
from pathlib import Path

import factory

from r1lab.pipelines.models import BaseModel, PromptSet

TINY_GRPO = dict(  # a few seconds per step on a CPU with the tiny model
    max_steps=3, num_generations=4, batch_size=8, max_completion_length=24, max_prompt_length=24,
    learning_rate=1e-3, beta=0.0, engine="torch", save_steps=1, save_total_limit=0, log_samples=4,
    eval_steps=0, eval_max_prompts=8, torch_threads=1,
)


class BaseModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BaseModel

    name = factory.Sequence(lambda n: f"base-{n}")
    path = "/nonexistent/model"
    parameter_count = 900_000


class PromptSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptSet

    name = factory.Sequence(lambda n: f"prompts-{n}")
    kind = "math"
    train_path = "/nonexistent/train.jsonl"


def write_prompts(folder: Path, n: int = 16, n_eval: int = 4) -> tuple[Path, Path]:
    """Addition prompts in the tiny model's world (`a+b`, gold answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"add-{i}", "prompt": f"{10 + i}+{20 + 3 * i}", "answer": str(30 + 4 * i), "type": "math"}
            for i in range(n + n_eval)]
    train, ev = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))
    ev.write_text("".join(json.dumps(r) + "\n" for r in rows[n:]))
    return train, ev
