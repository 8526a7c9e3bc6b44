"""Rejection sampling: each filter removes exactly the crafted completion it is for, in order;
the stage writes chat JSONL with provenance, the funnel, and resumes after SIGTERM."""

import json
import os
import signal

import pytest

from tests.training_backend.stage_factories import chat_rows, make_model, outputs, spec, write_jsonl, write_spec
from training_backend import tiny
from training_backend.__main__ import main
from training_backend.config import RejectionSamplingConfig, parse_config, parse_spec
from training_backend.data import check_chat_row
from training_backend.rejection import (
    FILTERS,
    Candidate,
    filter_candidates,
    funnel_metrics,
    mix_general,
    ngram_jaccard,
    readability_problem,
    score_candidates,
    to_chat_row,
    train,
)
from training_backend.report import MemoryReporter

ROW = {"id": "p1", "prompt": "347+85", "answer": "432", "type": "math"}
ENGLISH_25 = " ".join(["first we add the units digit then carry the one into the tens column and add again"] * 2).split()[:25]

CRAFTED = {
    "bad_format": "432",
    "wrong": "<think> add the units then the tens </think> <answer> 431 </answer>",
    "mixed_language": "<think> сложим числа семь плюс пять затем десятки </think> <answer> 432 </answer>",
    "code_in_cot": "<think> ```python\nprint(347 + 85)\n``` </think> <answer> 432 </answer>",
    "long_paragraph": "<think> " + "carry the one " * 20 + "\n\n short </think> <answer> 432 </answer>",
    "low_reward": "<think> " + " ".join(ENGLISH_25) + " ответ </think> <answer> 432 </answer>",
    "dup_a": "<think> add units then tens then hundreds and carry when needed </think> <answer> 432 </answer>",
    "dup_b": "<think> add units then tens then hundreds and carry when needed </think> <answer>432</answer>",
    "distinct_1": "<think> 347 plus 80 is 427 and plus 5 more is 432 </think> <answer> 432 </answer>",
    "distinct_2": "<think> round 85 up to 100 to get 447 then subtract 15 </think> <answer> 432 </answer>",
}
CFG = dict(min_reward=2.97, max_paragraph_chars=150, keep_per_prompt=2, dedupe_threshold=0.8, dedupe_ngram=2)


def crafted_candidates() -> list[Candidate]:
    cands = [Candidate(dict(ROW), i, text, length=len(text)) for i, text in enumerate(CRAFTED.values())]
    score_candidates(cands, parse_config("rejection_sampling", CFG))
    return cands


def test_each_filter_removes_its_own_crafted_completion_in_order():
    reasons = {}
    kept, funnel = filter_candidates(crafted_candidates(), parse_config("rejection_sampling", CFG), reasons)
    names = list(CRAFTED)
    assert {names[j]: f for (_, j), f in reasons.items()} == {
        "bad_format": "format", "wrong": "correct", "mixed_language": "language", "code_in_cot": "readability",
        "long_paragraph": "readability", "low_reward": "reward", "dup_a": "dedupe", "dup_b": "cap"}
    assert funnel["removed"] == {"format": 1, "correct": 1, "language": 1, "readability": 2, "reward": 1, "dedupe": 1, "cap": 1}
    assert funnel["remaining"] == {"format": 9, "correct": 8, "language": 7, "readability": 5, "reward": 4, "dedupe": 3, "cap": 2}
    assert funnel["sampled"] == 10 and funnel["kept"] == 2 and funnel["prompts_with_kept"] == 1
    # dup_a and dup_b share their CoT: the shorter (dup_b) is visited first and stays. All three
    # survivors then score 3.0, so the two shortest are kept and dup_b is capped.
    assert len(CRAFTED["dup_b"]) > max(len(CRAFTED["distinct_1"]), len(CRAFTED["distinct_2"]))
    assert sorted(names[c.sample] for c in kept) == ["distinct_1", "distinct_2"]
    m = funnel_metrics(funnel)
    assert m["funnel/sampled"] == 10 and m["funnel/removed/readability"] == 2 and m["funnel/cap"] == 2
    assert list(FILTERS) == ["format", "correct", "language", "readability", "reward", "dedupe", "cap"]


def test_the_checks_behind_the_filters():
    by_name = dict(zip(CRAFTED, crafted_candidates()))
    assert by_name["low_reward"].checks["language"] == pytest.approx(25 / 26)
    assert by_name["low_reward"].reward == pytest.approx(2 + 25 / 26)
    assert by_name["mixed_language"].checks["language"] < 0.5
    assert readability_problem(CRAFTED["code_in_cot"], 2000, allow_code=False) == "code block in the CoT"
    assert readability_problem(CRAFTED["code_in_cot"], 2000, allow_code=True) is None
    assert "279 characters" in readability_problem(CRAFTED["long_paragraph"], 150, allow_code=False)


def test_ngram_jaccard_on_hand_cases():
    assert ngram_jaccard("a b c", "a b c", 2) == 1.0
    assert ngram_jaccard("a b c", "a b d", 2) == pytest.approx(1 / 3)  # {ab, bc} vs {ab, bd}
    assert ngram_jaccard("a", "b", 3) == 0.0


def test_kept_rows_are_valid_chat_rows_with_provenance_and_general_data_mixes_in():
    c = crafted_candidates()[-1]
    row = to_chat_row(c, "ckpt/final", 40, seed=7)
    assert check_chat_row(row) is None
    assert row["messages"][1]["content"] == CRAFTED["distinct_2"] and row["answer"] == "432"
    assert row["provenance"] == {"prompt_id": "p1", "checkpoint": "ckpt/final", "step": 40, "sample": 9, "seed": 7,
                                 "rewards": c.rewards, "reward": pytest.approx(3.0), "length": c.length}
    general = [{**r, "_line": i + 1} for i, r in enumerate(chat_rows(5))]
    mixed, n = mix_general([row] * 6, general, ratio=0.5, seed=0, path="general.jsonl")
    assert n == 3 and len(mixed) == 9
    assert sorted(r["source"] for r in mixed) == ["general"] * 3 + ["rejection_sampling"] * 6
    assert all(r["provenance"]["file"] == "general.jsonl" for r in mixed if r["source"] == "general")
    assert mix_general([row] * 20, general, ratio=1.0, seed=0, path="g")[1] == 5  # capped by the file


def test_config_rules():
    with pytest.raises(ValueError, match="general_data"):
        parse_config("rejection_sampling", {"general_ratio": 0.3})
    assert isinstance(parse_config("rejection_sampling", {}), RejectionSamplingConfig)


def test_the_stage_writes_dataset_funnel_and_resumes(tmp_path, capsys):
    model = make_model(tmp_path / "model")
    prompts = tmp_path / "prompts.jsonl"
    tiny.write_jsonl(tiny.arithmetic_prompts(4, seed=5), prompts)
    general = write_jsonl(chat_rows(3), tmp_path / "general.jsonl")
    cfg = dict(num_samples=2, max_new_tokens=6, prompts_per_batch=2, torch_threads=1, general_data=str(general),
               general_ratio=0.5)
    rc = main(["run", str(write_spec(spec("rejection_sampling", model, tmp_path / "full", prompts, **cfg), tmp_path / "s.json"))])
    assert rc == 0
    out = outputs(tmp_path / "full")
    assert out["kind"] == "rejection_sampling" and out["dataset"].endswith("dataset.jsonl")
    funnel = json.loads(open(out["funnel"]).read())
    assert funnel["sampled"] == 8 and set(funnel["removed"]) == set(FILTERS)
    assert out["num_rows"] == funnel["kept"] + funnel["general_rows"]  # a random model keeps ~nothing
    assert len(open(out["candidates"]).read().splitlines()) == 8
    removed = [json.loads(x) for x in open(out["removed"]).read().splitlines()]
    assert len(removed) == 8 - funnel["kept"] and {r["filter"] for r in removed} <= set(FILTERS)

    def stop_after_first(line):
        if json.loads(line.removeprefix("R1LAB_PROGRESS "))["step"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    s = parse_spec(spec("rejection_sampling", model, tmp_path / "cut", prompts, **cfg))
    first = train(s, MemoryReporter(), template=tiny.TEMPLATE, progress=stop_after_first)
    assert first.stopped and first.step == 1
    train(s, MemoryReporter(), resume=True, template=tiny.TEMPLATE, progress=lambda _: None)
    a = [json.loads(x)["completion"] for x in (tmp_path / "full" / "candidates.jsonl").read_text().splitlines()]
    b = [json.loads(x)["completion"] for x in (tmp_path / "cut" / "candidates.jsonl").read_text().splitlines()]
    assert a == b  # per-batch seeds: the resumed run samples what the uninterrupted one did
