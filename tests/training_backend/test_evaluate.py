"""pass@1, pass@k and cons@k on hand-computed cases, and the eval stage on a tiny random model."""

import json
import math

import pytest

from tests.training_backend.stage_factories import make_model, outputs, spec, write_spec
from training_backend import tiny
from training_backend.__main__ import main
from training_backend.evaluate import PromptResult, cons_at_k, majority_vote, pass_at_1, pass_at_k, summarize


def test_pass_at_1_is_the_mean_over_prompts_of_the_share_correct():
    assert pass_at_1([[True, False, False, True], [False] * 4, [True] * 4]) == pytest.approx((0.5 + 0 + 1) / 3)


@pytest.mark.parametrize(("n", "c", "k", "want"), [
    (4, 1, 1, 0.25), (4, 1, 2, 1 - 3 / 6), (4, 0, 4, 0.0), (4, 2, 3, 1.0), (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
])
def test_pass_at_k_unbiased_estimator(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


def test_equivalent_answers_vote_together_and_ties_go_to_the_first_seen():
    # {1/2, 0.5, \frac{1}{2}} is one group of 3 against {3, 3}
    assert majority_vote(["3", "1/2", "0.5", "3", "\\frac{1}{2}", None]) == "1/2"
    assert majority_vote(["7", "1/2", "0.5", "7"]) == "7"  # 2 against 2: first seen wins
    assert majority_vote([None, "", None]) is None


def test_cons_at_k_counts_prompts_whose_majority_is_right():
    answers = [["5", "5", "4"], ["0.5", "1/2", "2"], ["9", "8", "8"], [None, None, None]]
    golds = ["5", "\\frac{1}{2}", "9", "1"]
    assert cons_at_k(answers, golds) == pytest.approx(2 / 4)


def test_summarize_names_the_metrics_as_the_dashboard_reads_them():
    rows = [{"id": "a", "prompt": "1+1", "answer": "2"}, {"id": "b", "prompt": "2+2", "answer": "4"}]
    results = [
        PromptResult(rows[0], ["x", "y", "z", "w"], [10, 20, 30, 40], [False] * 4, ["2", "2", "3", None], [True, True, False, False]),
        PromptResult(rows[1], ["wait, x", "y", "z", "w"], [5, 5, 5, 5], [True, False, False, False], ["5", "5", "4", "4"], [False, False, True, True]),
    ]
    m = summarize(results)
    assert m["eval/pass@1"] == pytest.approx(0.5)
    assert m["eval/cons@k"] == pytest.approx(0.5)  # prompt a votes 2 (right); prompt b votes 5 (first of a tie, wrong)
    assert m["eval/pass@k"] == pytest.approx(1.0)
    assert m["eval/mean_length"] == pytest.approx(120 / 8)
    assert m["eval/clipped_ratio"] == pytest.approx(1 / 8)
    assert m["eval/reflection/frac_responses"] == pytest.approx(1 / 8)


def test_the_eval_stage_writes_metrics_results_and_progress(tmp_path, capsys):
    model = make_model(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    tiny.write_jsonl(tiny.arithmetic_prompts(5, seed=2), data)
    s = spec("eval", model, tmp_path / "out", data, num_samples=3, max_new_tokens=6, prompts_per_batch=2, torch_threads=1)
    rc = main(["run", str(write_spec(s, tmp_path / "spec.json"))])
    assert rc == 0
    lines = [json.loads(x.removeprefix("R1LAB_PROGRESS ")) for x in capsys.readouterr().out.splitlines()
             if x.startswith("R1LAB_PROGRESS ")]
    assert [x["step"] for x in lines] == [1, 2, 3] and lines[-1]["total"] == 3
    out = outputs(tmp_path / "out")
    assert out["kind"] == "eval" and out["status"] == "succeeded" and out["final_model"] is None
    assert 0.0 <= out["summary"]["eval/pass@1"] <= 1.0 and "eval/cons@k" in out["summary"]
    results = [json.loads(x) for x in (tmp_path / "out" / "eval_results.jsonl").read_text().splitlines()]
    assert len(results) == 5 and all(len(r["completions"]) == 3 for r in results)
    metrics = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert {"eval/pass@1", "eval/cons@k", "eval/mean_length"} <= {m.get("key") for m in metrics}


def test_a_grpo_stage_reports_pass_at_1_and_cons_at_k_on_its_held_out_prompts(tmp_path):
    from training_backend.config import parse_spec
    from training_backend.grpo import train
    from training_backend.report import MemoryReporter

    model = make_model(tmp_path / "model")
    data, held = tmp_path / "prompts.jsonl", tmp_path / "held.jsonl"
    tiny.write_jsonl(tiny.arithmetic_prompts(4, seed=2), data)
    tiny.write_jsonl(tiny.arithmetic_prompts(3, seed=4), held)
    s = spec("grpo", model, tmp_path / "out", data, held, max_steps=2, eval_steps=2, eval_num_samples=2, num_generations=2,
             batch_size=4, max_completion_length=6, engine="torch", torch_threads=1, reward_funcs=["accuracy", "format"])
    rep = MemoryReporter()
    train(parse_spec(s), rep, template=tiny.TEMPLATE, progress=lambda _: None)
    steps = {k: [st for st, key, _ in rep.metrics if key == k] for k in ("eval/pass@1", "eval/cons@k", "eval/accuracy")}
    assert steps["eval/pass@1"] == steps["eval/cons@k"] == steps["eval/accuracy"] == [0, 2]
