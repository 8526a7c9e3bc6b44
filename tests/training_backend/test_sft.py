"""SFT on a tiny random Llama: prompt tokens masked (on token ids), bad JSONL refused with line
numbers, real training, and resume after SIGTERM giving the same weights as an uninterrupted run."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from tests.training_backend.stage_factories import chat_rows, make_model, outputs, spec, write_jsonl, write_spec
from training_backend import models, tiny
from training_backend.__main__ import main
from training_backend.config import parse_spec
from training_backend.data import DatasetError, read_chat_jsonl
from training_backend.report import MemoryReporter
from training_backend.sft import IGNORE, collate, encode_chat, train
from training_backend.models import prompt_renderer

FAST = dict(batch_size=4, learning_rate=3e-3, lr_scheduler="constant", engine="torch", torch_threads=1,
            max_seq_length=96, save_total_limit=0, eval_num_samples=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny") / "base")


def test_only_assistant_tokens_and_eos_are_labelled():
    tok = tiny.CharTokenizer()
    msgs = [{"role": "user", "content": "12+30"}, {"role": "assistant", "content": "<think> 2+0=2 </think> <answer> 42 </answer>"}]
    ids, labels = encode_chat(msgs, tok, prompt_renderer(tok, tiny.TEMPLATE))
    prompt_ids = tok.encode_fast("User: 12+30 Assistant:")
    answer_ids = tok.encode_fast(" <think> 2+0=2 </think> <answer> 42 </answer>") + [tok.eos_token_id]
    assert ids == prompt_ids + answer_ids
    assert labels == [IGNORE] * len(prompt_ids) + answer_ids
    assert tok.encode_fast("<think>")[0] in labels  # the tag is one token, and it is learned


def test_multi_turn_masks_every_user_turn_and_the_system_prompt():
    tok = tiny.CharTokenizer()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1"},
            {"role": "assistant", "content": "2"}, {"role": "user", "content": "2+2"},
            {"role": "assistant", "content": "4"}]
    ids, labels = encode_chat(msgs, tok, prompt_renderer(tok, tiny.TEMPLATE))
    learned = [i for i, y in zip(ids, labels) if y != IGNORE]
    assert learned == tok.encode_fast(" 2") + [tok.eos_token_id] + tok.encode_fast(" 4") + [tok.eos_token_id]
    assert tok.decode_fast([i for i, y in zip(ids, labels) if y == IGNORE]) == "be brief User: 1+1 Assistant: User: 2+2 Assistant:"
    # right padding keeps the masks aligned with the ids
    x, m, y = collate([(ids, labels), (ids[:5], labels[:5])], tok.pad_token_id)
    assert x.shape == y.shape == m.shape and m[1].sum() == 5 and (y[1, 5:] == IGNORE).all()


def test_bad_rows_are_reported_by_line_number_and_nothing_is_trained(tmp_path, model_dir, capsys):
    good = json.dumps(chat_rows(1)[0])
    lines = [good, "{not json", good, json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
             json.dumps({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}),
             "", json.dumps({"prompt": "no messages"})]
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as info:
        read_chat_jsonl(data)
    assert [n for n, _ in info.value.errors] == [2, 4, 5, 7]
    assert "last message must be the assistant's" in dict(info.value.errors)[4]

    out = tmp_path / "out"
    rc = main(["run", str(write_spec(spec("sft", model_dir, out, data, **FAST), tmp_path / "spec.json"))])
    err = capsys.readouterr().err
    assert rc == 2
    assert all(f"bad.jsonl:{n}:" in err for n in (2, 4, 5, 7))
    assert not (out / "checkpoints").exists() and not (out / "outputs.json").exists()


def test_sft_learns_the_responses_and_writes_a_loadable_final_model(tmp_path, model_dir):
    data = write_jsonl(chat_rows(16), tmp_path / "train.jsonl")
    held = write_jsonl(chat_rows(4, seed=9), tmp_path / "eval.jsonl")
    s = parse_spec(spec("sft", model_dir, tmp_path / "out", data, held, max_steps=16, eval_steps=8,
                        **{**FAST, "eval_num_samples": 2, "eval_max_new_tokens": 8}))
    rep, lines = MemoryReporter(), []
    result = train(s, rep, template=tiny.TEMPLATE, progress=lines.append)
    loss = rep.series("loss")
    assert len(loss) == 16 and sum(loss[-3:]) / 3 < 0.75 * sum(loss[:3]) / 3
    for key in ("grad_norm", "learning_rate", "tokens_per_s", "eval/loss", "eval/pass@1", "eval/cons@k", "eval/mean_length"):
        assert rep.series(key), key
    assert rep.series("eval/loss")[-1] < rep.series("eval/loss")[0] * 1.01
    assert json.loads(lines[-1].removeprefix("R1LAB_PROGRESS ")) == {"step": 16, "total": 16, "eta_s": 0.0}
    out = outputs(tmp_path / "out")
    assert out["kind"] == "sft" and out["status"] == "succeeded" and out["final_model"] == result.final_model
    assert (tmp_path / "out" / "final" / "r1lab_template.txt").read_text() == tiny.TEMPLATE
    model, _ = models.load_model_and_tokenizer(out["final_model"])  # a plain HF folder
    assert not (tmp_path / "out" / "final" / "optimizer.pt").exists()
    assert sum(p.numel() for p in model.parameters()) > 0


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(tmp_path, model_dir):
    data = write_jsonl(chat_rows(10), tmp_path / "train.jsonl")
    cfg = dict(max_steps=6, save_steps=2, **FAST)
    train(parse_spec(spec("sft", model_dir, tmp_path / "full", data, **cfg)), MemoryReporter(),
          template=tiny.TEMPLATE, progress=lambda _: None)

    def stop_at_3(line):
        if json.loads(line.removeprefix("R1LAB_PROGRESS "))["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    first = train(parse_spec(spec("sft", model_dir, tmp_path / "cut", data, **cfg)), MemoryReporter(),
                  template=tiny.TEMPLATE, progress=stop_at_3)
    assert first.stopped and first.step == 3
    assert outputs(tmp_path / "cut")["status"] == "stopped"
    assert (tmp_path / "cut" / "checkpoints" / "step-000003" / "trainer_state.json").exists()  # off the save_steps grid
    rep = MemoryReporter()
    second = train(parse_spec(spec("sft", model_dir, tmp_path / "cut", data, **cfg)), rep, resume=True,
                   template=tiny.TEMPLATE, progress=lambda _: None)
    assert not second.stopped and sorted({s for s, k, _ in rep.metrics if k == "loss"}) == [4, 5, 6]
    assert rep.rewinds == [3]
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_sft_runs_through_deepspeed(tmp_path, model_dir):
    data = write_jsonl(chat_rows(8), tmp_path / "train.jsonl")
    ds, plain = MemoryReporter(), MemoryReporter()
    train(parse_spec(spec("sft", model_dir, tmp_path / "ds", data, max_steps=2, **{**FAST, "engine": "deepspeed"})), ds,
          template=tiny.TEMPLATE, progress=lambda _: None)
    train(parse_spec(spec("sft", model_dir, tmp_path / "pt", data, max_steps=2, **FAST)), plain,
          template=tiny.TEMPLATE, progress=lambda _: None)
    assert ds.series("loss") == pytest.approx(plain.series("loss"), rel=1e-4)
    assert (tmp_path / "ds" / "checkpoints" / "step-000002" / "deepspeed").is_dir()
    assert torch.isfinite(torch.tensor(ds.series("grad_norm"))).all()
