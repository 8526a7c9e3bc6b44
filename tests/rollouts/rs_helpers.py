"""A rejection-sampling stage's output folder, made by the stage's own filter code
(training_backend.rejection.filter_candidates / to_chat_row) over hand-written candidates."""
from __future__ import annotations

import json
from pathlib import Path

from r1lab.pipelines.models import Stage
from tests.factories import PipelineRunFactory
from tests.rollouts.helpers import XSS
from training_backend.config import config_to_dict, parse_config
from training_backend.rejection import Candidate, filter_candidates, to_chat_row

RS_CONFIG = {"keep_per_prompt": 2, "min_reward": 0.5, "min_language_consistency": 0.95, "dedupe_threshold": 0.9}
CHECKPOINT = "/shared/run-1/grpo/checkpoints/step-000300"


def cand(pid: str, answer: str, sample: int, think: str, *, fmt=1.0, correct=1.0, lang=1.0, reward=2.0, length=40) -> Candidate:
    return Candidate(row={"id": pid, "prompt": f"prompt {pid}: {XSS}" if pid == "b" else f"prompt {pid}", "answer": answer},
                     sample=sample, completion=f"<think>{think}</think><answer>{answer}</answer>", length=length,
                     rewards={"accuracy": correct, "format": fmt}, reward=reward,
                     checks={"format": fmt, "correct": correct, "language": lang})


def candidates() -> list[Candidate]:
    return [
        cand("a", "4", 0, "Add 2 and 2. Wait, recheck: it is 4."),
        cand("a", "4", 1, "Two plus two makes four, counting on fingers one by one.", reward=1.9),
        cand("a", "4", 2, "Add 2 and 2. Wait, recheck: it is 4.", reward=1.8),  # near-duplicate of sample 0
        cand("a", "4", 3, "no tags at all", fmt=0.0, reward=0.0),
        cand("a", "4", 4, "2+2=5", correct=0.0, reward=1.0),
        cand("b", "7", 0, f"Three and four: seven. {XSS}"),
        cand("b", "7", 1, "三加四等于七 mixed", lang=0.5, reward=1.5),
        cand("b", "7", 2, "```python\nprint(3+4)\n```", reward=2.0),
        cand("b", "7", 3, "I think seven, guessing here entirely", reward=0.2),
        cand("b", "7", 4, "Counting up from three by four steps gives seven exactly.", reward=1.95),
        cand("b", "7", 5, "Seven is four more than three, so the sum is seven.", reward=1.7),
    ]


def write_stage_output(out: Path, *, with_removed: bool = True) -> dict:
    """What rejection.train writes at its end: dataset.jsonl, funnel.json, candidates.jsonl, removed.jsonl."""
    cfg = parse_config("rejection_sampling", RS_CONFIG)
    cands = candidates()
    reasons: dict = {}
    kept, funnel = filter_candidates(cands, cfg, reasons)
    out.mkdir(parents=True, exist_ok=True)
    rows = [to_chat_row(c, CHECKPOINT, 300, 1) for c in kept]
    funnel.update(general_rows=0, total_rows=len(rows), checkpoint=CHECKPOINT, checkpoint_step=300, filters=list(funnel["removed"]))
    (out / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "funnel.json").write_text(json.dumps(funnel))
    (out / "candidates.jsonl").write_text("".join(json.dumps(c.to_json()) + "\n" for c in cands))
    outputs = {"kind": "rejection_sampling", "status": "succeeded", "dataset": str(out / "dataset.jsonl"),
               "funnel": str(out / "funnel.json"), "candidates": str(out / "candidates.jsonl"), "num_rows": len(rows)}
    if with_removed:
        (out / "removed.jsonl").write_text("".join(json.dumps({"prompt_id": p, "sample": s, "filter": f}) + "\n" for (p, s), f in reasons.items()))
        outputs["removed"] = str(out / "removed.jsonl")
    return {"outputs": outputs, "funnel": funnel, "reasons": reasons, "kept": kept, "config": config_to_dict(cfg)}


def make_rs_stage(tmp_path: Path, *, with_removed: bool = True) -> tuple[Stage, dict]:
    made = write_stage_output(tmp_path / "rs", with_removed=with_removed)
    run = PipelineRunFactory(name="r1-pipeline", template="r1")
    grpo = Stage.objects.create(run=run, index=1, name="Reasoning GRPO", kind="grpo", status="succeeded")
    stage = Stage.objects.create(
        run=run, index=2, name="Rejection sampling", kind="rejection_sampling", config=RS_CONFIG, status="succeeded",
        output_dir=str(tmp_path / "rs"), outputs=made["outputs"],
        resolved_inputs={"model": {"from": "stage", "index": 1, "stage_id": grpo.pk, "label": grpo.name, "path": CHECKPOINT}},
    )
    return stage, made
