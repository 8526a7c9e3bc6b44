"""The tiny model, its tokenizer and the synthetic arithmetic world."""

import random

import torch

from training_backend import models, tiny
from training_backend.rewards import accuracy_rewards, format_rewards


def test_tokenizer_round_trips_and_keeps_tags_whole(tmp_path):
    tok = tiny.CharTokenizer()
    text = "User: 12+30 Assistant: <think> 2+0=2>2, 1+3=4>42. </think> <answer> 42 </answer>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text and tok.encode_fast(text) == ids
    assert tok.convert_ids_to_tokens(tok.encode_fast("<think>"))[0] == "<think>"
    tok.save_pretrained(tmp_path)
    again = tiny.CharTokenizer.from_pretrained(tmp_path)
    assert again.encode_fast(text) == ids and again.padding_side == "left" and again.eos_token_id == 1


def test_clean_think_traces_are_right_and_well_formed():
    rng = random.Random(0)
    for _ in range(200):
        a, b = tiny.sample_problem(rng)
        text, result = tiny.think_pass(a, b, 0.0, rng)
        assert result == str(a + b), text
        completion = f"<think> {text} </think> <answer> {result} </answer>"
        assert accuracy_rewards([completion], answer=[str(a + b)]) == [1.0]
        assert format_rewards([completion]) == [1.0]


def test_corpus_mixes_direct_think_and_recheck_with_honest_accuracy():
    rng = random.Random(1)
    stats = {"direct": [], "think": [], "recheck": []}
    for _ in range(3000):
        a, b = tiny.sample_problem(rng)
        c = tiny.completion_for(a, b, rng)
        mode = "direct" if "<think>" not in c else "recheck" if "recheck" in c else "think"
        stats[mode].append(accuracy_rewards([c], answer=[str(a + b)])[0])
    acc = {m: sum(v) / len(v) for m, v in stats.items()}
    assert acc["direct"] < acc["think"] < acc["recheck"] == 1.0
    assert len(stats["direct"]) > len(stats["think"]) > len(stats["recheck"])


def test_demo_splits_are_disjoint_and_held_out_of_pretraining():
    train, evals = tiny.demo_splits()
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in evals}
    assert len(tiny.demo_holdout()) == len(train) + len(evals)


def test_pretrain_saves_a_self_contained_model_folder(tmp_path):
    torch.set_num_threads(1)
    logs = []
    out = tiny.pretrain_base(tmp_path / "base", steps=3, batch_size=4, log=logs.append)
    model, tok = models.load_model_and_tokenizer(out)
    assert 0.3e6 < sum(p.numel() for p in model.parameters()) < 1.5e6
    assert len(logs) == 2 and "loss" in logs[0]
    ids = torch.tensor([tok.encode_fast(tiny.TEMPLATE.format(prompt="12+30"))])
    out_ids = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out_ids.shape[1] <= ids.shape[1] + 5
