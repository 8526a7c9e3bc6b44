"""The R1 pipeline's stages chained through files, as the worker chains them: each stage is
`python -m training_backend run SPEC.json` (in-process `main`) whose inputs are paths from the
previous stages' outputs.json. Run on both local bases: the tiny char-level Llama (prompts in its
`User: {prompt} Assistant:` template) and the real-architecture one (`make-base --arch qwen2`: a
Qwen2 with a byte-level BPE tokenizer, prompts through its ChatML chat template, stop ids from its
generation_config), each stage on the code path any HF folder takes. Kept cheap: the base is
barely pretrained (the real one: 20 steps) and the cold-start SFT makes it memorise four
additions, so that rejection sampling has correct completions to keep.
benchmarks/r1_pipeline.py is the real miniature run."""

import json
from pathlib import Path

from tests.training_backend.stage_factories import chat_rows, make_model, outputs, preference_rows, spec, write_jsonl, write_spec
import pytest

from training_backend import realbase, tiny
from training_backend.__main__ import main

FAST = {"torch_threads": 1}
GRPO = dict(num_generations=2, batch_size=4, max_steps=1, learning_rate=1e-5, beta=0.0, max_completion_length=24,
            max_prompt_length=24, engine="torch", save_steps=10, log_samples=2, **FAST)


def run(tmp: Path, name: str, s: dict) -> dict:
    s = {**s, "output_dir": str(tmp / name)}
    assert main(["run", str(write_spec(s, tmp / f"{name}.json"))]) == 0, name
    return outputs(tmp / name)


# per base: (the cold-start SFT's learning rate and steps, the template file a stage hands on)
BASES = {"tiny": (1e-2, 60, tiny.TEMPLATE), "qwen2": (1e-3, 70, None)}


@pytest.mark.parametrize("kind", list(BASES))
def test_cold_start_grpo_rejection_sft_reward_model_all_scenario_grpo_eval(tmp_path, kind):
    lr, sft_steps, template = BASES[kind]
    base = make_model(tmp_path / "base") if kind == "tiny" else realbase.make_real_base(tmp_path / "base", steps=20)
    # short answers the tiny random model memorises in a few dozen steps
    cold = [{**r, "messages": [r["messages"][0], {"role": "assistant", "content": f"<think> add </think> <answer> {r['answer']} </answer>"}]}
            for r in chat_rows(4, seed=11)]
    prompts = [{"id": r["id"], "prompt": r["messages"][0]["content"], "answer": r["answer"], "type": "math"} for r in cold]
    data = tmp_path / "data"
    write_jsonl(cold, data / "cold.jsonl")
    write_jsonl(prompts, data / "prompts.jsonl")
    write_jsonl([{"messages": [{"role": "user", "content": "say hi"}, {"role": "assistant", "content": "<think> x </think> <answer> hi </answer>"}]}] * 3,
                data / "general.jsonl")
    write_jsonl(preference_rows(16, seed=3), data / "pairs.jsonl")
    write_jsonl(prompts[:2] + [{"id": "g1", "prompt": "say hi", "type": "general"}, {"id": "g2", "prompt": "say yo", "type": "general"}],
                data / "mixed.jsonl")

    sft1 = run(tmp_path, "sft1", spec("sft", base, "", data / "cold.jsonl", max_steps=sft_steps, batch_size=4, learning_rate=lr,
                                      lr_scheduler="constant", engine="torch", max_seq_length=96, eval_num_samples=0, **FAST))
    handed_on = Path(sft1["final_model"]) / "r1lab_template.txt"
    assert (handed_on.read_text() if handed_on.exists() else None) == template
    assert sft1["prompt_format"]["kind"] == ("template" if template else "chat")
    g2 = run(tmp_path, "grpo2", spec("grpo", sft1["final_model"], "", data / "prompts.jsonl",
                                      reward_funcs=["accuracy", "format", "language_consistency"], **GRPO))
    assert (Path(g2["final_model"]) / "r1lab_template.txt").exists() == (template is not None)  # handed on by the CLI
    rs = run(tmp_path, "rs", spec("rejection_sampling", g2["final_model"], "", data / "prompts.jsonl", num_samples=2,
                                  temperature=0.3, max_new_tokens=24, prompts_per_batch=4, general_data=str(data / "general.jsonl"),
                                  general_ratio=0.5, **FAST))
    funnel = json.loads(Path(rs["funnel"]).read_text())
    assert funnel["kept"] >= 2 and funnel["general_rows"] >= 1 and rs["num_rows"] == funnel["kept"] + funnel["general_rows"]
    rows = [json.loads(x) for x in Path(rs["dataset"]).read_text().splitlines()]
    assert {r["provenance"]["checkpoint"] for r in rows if r["source"] == "rejection_sampling"} == {g2["final_model"]}
    assert {r["provenance"]["step"] for r in rows if r["source"] == "rejection_sampling"} == {1}

    sft3 = run(tmp_path, "sft3", spec("sft", base, "", rs["dataset"], max_steps=3, batch_size=4, learning_rate=1e-3,
                                      engine="torch", max_seq_length=96, eval_num_samples=0, **FAST))
    rm = run(tmp_path, "rm", spec("reward_model", base, "", data / "pairs.jsonl", max_steps=3, batch_size=8,
                                  learning_rate=1e-3, engine="torch", max_seq_length=96, **FAST))
    g4 = run(tmp_path, "grpo4", spec("grpo", sft3["final_model"], "", data / "mixed.jsonl",
                                      reward_funcs=["accuracy", "format", "reward_model"], reward_model_path=rm["final_model"],
                                      reward_model_types=["general"], **{**GRPO, "batch_size": 8}))  # all 4 rows in the step
    metrics = [json.loads(x) for x in (tmp_path / "grpo4" / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("key") == "rewards/reward_model/mean" and m["value"] is not None for m in metrics)
    ev = run(tmp_path, "eval", spec("eval", g4["final_model"], "", data / "prompts.jsonl", num_samples=2,
                                    max_new_tokens=24, **FAST))
    assert {"eval/pass@1", "eval/cons@k", "eval/mean_length"} <= set(ev["summary"])
    assert [outputs(tmp_path / n)["kind"] for n in ("sft1", "grpo2", "rs", "sft3", "rm", "grpo4", "eval")] == [
        "sft", "grpo", "rejection_sampling", "sft", "reward_model", "grpo", "eval"]
    assert {outputs(tmp_path / n)["prompt_format"]["kind"] for n in ("sft1", "grpo2", "rs", "sft3", "rm", "grpo4", "eval")} == {
        "template" if template else "chat"}
