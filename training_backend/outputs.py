"""`<output_dir>/outputs.json`: what a stage produced, read by the worker to chain the next stage.

Every kind writes the keys the GRPO stage writes (grpo._finish):

    {"kind", "status": "succeeded"|"stopped", "step", "final_model": path|null, "checkpoints": [...],
     "latest_checkpoint": path|null, "metrics": metrics.jsonl path|null, "summary": {...}}

and adds its own: `rejection_sampling` → "dataset" (the chat JSONL), "funnel" (the summary JSON),
"candidates" (every scored sample), "removed" (the filter that removed each), "num_rows";
`eval` → "model" (what was evaluated), "results" (per-prompt JSONL); its metrics are in "summary".
`final_model` of `sft` / `reward_model` is a loadable HF folder (model + tokenizer +
r1lab_template.txt when the stage had a template); `rejection_sampling` and `eval` have none.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from training_backend.grpo import TrainResult

# What a final model folder keeps of a checkpoint: the weights, tokenizer and template, not the
# optimizer or trainer state (the same list grpo.train uses).
_NOT_IN_FINAL = shutil.ignore_patterns("optimizer.pt", "deepspeed", "ref_model.pt", "trainer_state.json")


def write_final(out_dir: Path, checkpoint: str) -> str:
    final = Path(out_dir) / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(checkpoint, final, ignore=_NOT_IN_FINAL)
    return str(final)


def finish_stage(out_dir: Path, kind: str, step: int, stopped: bool, final: str | None, saved: list[str],
                 last: dict, eval_metrics: dict, metrics_path: str | None, **extra) -> TrainResult:
    """Write outputs.json and return the TrainResult the CLI maps to an exit code."""
    summary = {"step": step, "stopped": stopped, **{f"last/{k}": v for k, v in last.items()}, **eval_metrics}
    outputs = {"kind": kind, "status": "stopped" if stopped else "succeeded", "step": step,
               "final_model": final, "checkpoints": list(saved), "latest_checkpoint": saved[-1] if saved else None,
               "metrics": metrics_path, "summary": summary, **extra}
    tmp = Path(out_dir) / "outputs.json.tmp"
    tmp.write_text(json.dumps(outputs, indent=2))
    tmp.replace(Path(out_dir) / "outputs.json")
    return TrainResult(step, stopped, final, list(saved), summary)


def save_step_checkpoint(out_dir: Path, step: int, backend, tokenizer, cfg, template: str | None,
                         saved: list[str]) -> str:
    """grpo.save_checkpoint into checkpoints/step-N (+ the prompt template, so that the next stage
    reading this folder wraps prompts the same way), pruned to cfg.save_total_limit."""
    from training_backend.grpo import save_checkpoint

    path = save_checkpoint(Path(out_dir) / "checkpoints" / f"step-{step:06d}", backend, tokenizer, None, step, cfg)
    if template is not None:
        (path / "r1lab_template.txt").write_text(template)
    if str(path) not in saved:
        saved.append(str(path))
    while cfg.save_total_limit and len(saved) > cfg.save_total_limit:
        shutil.rmtree(saved.pop(0), ignore_errors=True)
    return str(path)
