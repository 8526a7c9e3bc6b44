"""Factories for the stage tests (sft, rejection, eval, reward model, pipeline): a tiny random
Llama folder, the three dataset formats, and SPEC.json dicts."""

import json
from pathlib import Path

from training_backend import tiny


def make_model(path: Path, *, template: bool = True) -> Path:
    """A tiny random Llama + char tokenizer folder (what make-base writes, untrained)."""
    if not (path / "config.json").exists():
        model, tok = tiny.build_model(seed=0, num_hidden_layers=2, hidden_size=64, intermediate_size=128)
        model.save_pretrained(path)
        tok.save_pretrained(path)
        if template:
            (path / "r1lab_template.txt").write_text(tiny.TEMPLATE)
    return path


def worked_completion(a: int, b: int) -> str:
    """A correct R1-format completion of a+b in the tiny world's style."""
    import random

    text, ans = tiny.think_pass(a, b, 0.0, random.Random(0))
    return f"<think> {text} </think> <answer> {ans} </answer>"


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    return [{"id": r["id"], "messages": [{"role": "user", "content": r["prompt"]},
                                         {"role": "assistant", "content": worked_completion(*map(int, r["prompt"].split("+")))}],
             "answer": r["answer"]}
            for r in tiny.arithmetic_prompts(n, seed)]


def preference_rows(n: int, seed: int = 0) -> list[dict]:
    """chosen = a worked R1-format answer, rejected = a bare wrong number: a preference a tiny
    model can learn in a few dozen steps."""
    rows = []
    for r in tiny.arithmetic_prompts(n, seed):
        a, b = map(int, r["prompt"].split("+"))
        rows.append({"prompt": r["prompt"], "chosen": worked_completion(a, b), "rejected": f"{a + b + 1}"})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    tiny.write_jsonl(rows, path)
    return path


def spec(kind: str, model: Path, out: Path, train_data: Path, eval_data: Path | None = None, **config) -> dict:
    return {"kind": kind, "model_path": str(model), "output_dir": str(out), "train_data": str(train_data),
            "eval_data": str(eval_data) if eval_data else None, "seed": 1, "config": config}


def write_spec(d: dict, path: Path) -> Path:
    path.write_text(json.dumps(d))
    return path


def outputs(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "outputs.json").read_text())
