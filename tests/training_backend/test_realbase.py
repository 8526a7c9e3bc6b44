"""The real-architecture local base (training_backend.realbase): its byte-level BPE tokenizer, its
ChatML template, its corpus, and the folder `make-base --arch qwen2` writes, loaded as any Hugging
Face folder is, by a process that never imports r1lab code."""

import json
import os
import re
import subprocess
import sys
import time
from itertools import islice

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training_backend import realbase, tiny
from training_backend.__main__ import main

ALL_TOKENS = (*realbase.SPECIAL_TOKENS, *realbase.TAG_TOKENS)
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "12+30"},
            {"role": "assistant", "content": "<think> 2+0=2>2, 1+3=4>42. </think> <answer> 42 </answer>"}]

# What a user's script does with the folder: Auto* classes only, then a chat-templated generate.
LOAD_SCRIPT = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
prompt = tok.apply_chat_template([{"role": "user", "content": "12+30"}], tokenize=False, add_generation_prompt=True)
enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
out = model.generate(**enc, max_new_tokens=8)
print(json.dumps({"r1lab_modules": sorted(m for m in sys.modules if m.split(".")[0] == "training_backend"),
                  "model_type": model.config.model_type, "params": sum(p.numel() for p in model.parameters()),
                  "new_tokens": out.shape[1] - enc["input_ids"].shape[1], "prompt": prompt,
                  "completion": tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)}))
"""


@pytest.fixture(scope="module")
def tok():
    texts = realbase.doc_paragraphs() + list(islice(realbase.iter_corpus(0), 3000))
    return realbase.build_tokenizer(texts)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """What `python -m training_backend make-base DIR --arch qwen2` writes (2 steps)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("realbase") / "base"
    assert main(["make-base", str(out), "--arch", "qwen2", "--steps", "2", "--threads", "1"]) == 0
    return out


def test_tokenizer_is_byte_level_bpe_and_round_trips_any_text(tok):
    spec = json.loads(tok.backend_tokenizer.to_str())
    assert spec["model"]["type"] == "BPE" and spec["decoder"]["type"] == "ByteLevel"
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]  # Qwen2's: digits apart, then bytes
    assert split["type"] == "Split" and byte_level["type"] == "ByteLevel" and byte_level["add_prefix_space"] is False
    assert len(tok) == 4096 and tok.padding_side == "left"
    for text in ("Grüße aus Köln, naïve café: 東京 → 👩‍💻 ∑x² ≠ ∞", "\t tabs  and\n\nnewlines \r\n", "47+85=132"):
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_special_tokens_and_tags_are_single_ids_and_tags_survive_skip_special(tok):
    for t in ALL_TOKENS:
        ids = tok("x" + t + "y", add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(t) in ids and len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    ids = tok(realbase.chatml(MESSAGES) + "<|endoftext|>", add_special_tokens=False)["input_ids"]
    text = tok.decode(ids, skip_special_tokens=True)
    assert all(t in text for t in realbase.TAG_TOKENS)
    assert not any(t in text for t in realbase.SPECIAL_TOKENS)


def test_chat_template_renders_chatml_roles_and_the_generation_prompt(tok):
    rendered = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert rendered == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                        "<|im_start|>user\n12+30<|im_end|>\n"
                        "<|im_start|>assistant\n<think> 2+0=2>2, 1+3=4>42. </think> <answer> 42 </answer><|im_end|>\n")
    assert rendered == realbase.chatml(MESSAGES)  # the corpus is rendered as the template renders
    prompt = tok.apply_chat_template(MESSAGES[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n12+30<|im_end|>\n<|im_start|>assistant\n"  # no default system prompt
    assert prompt == realbase.chatml(MESSAGES[1:2], add_generation_prompt=True)


def test_corpus_is_deterministic_mixes_raw_chat_and_english_and_keeps_the_holdout_out():
    holdout = tiny.demo_holdout()
    texts = list(islice(realbase.iter_corpus(3, holdout), 3000))
    assert texts[:50] == list(islice(realbase.iter_corpus(3, holdout), 50))
    assert all(t.endswith("<|endoftext|>") for t in texts if "<think>" in t or "<answer>" in t)
    raw = [t for t in texts if t.startswith("User: ")]
    chat = [t for t in texts if t.startswith("<|im_start|>")]
    assert len(raw) > 800 and len(chat) > 800 and len(texts) - len(raw) - len(chat) > 600
    assert all(re.fullmatch(r"User: \d+\+\d+ Assistant: <.*</answer><\|endoftext\|>", t) for t in raw)
    assert all(re.search(r"<\|im_start\|>user\n\d+\+\d+<\|im_end\|>\n<\|im_start\|>assistant\n<"
                         r".*</answer><\|im_end\|>\n<\|endoftext\|>$", t) for t in chat)
    problems = {(int(a), int(b)) for t in texts for a, b in re.findall(r"(\d+)\+(\d+)", t)
                if len(a) == len(b) == 2}  # the prompts (a recheck's steps add single digits)
    problems |= {(int(a), int(b)) for t in texts for a, b in re.findall(r"has (\d+) \w+ and \D+ (\d+) more", t)}
    assert len(problems) > 1000 and not problems & holdout


def test_the_saved_tokenizer_tokenizes_as_the_one_the_model_was_trained_with(tok, tmp_path):
    # transformers loads a qwen2 folder's tokenizer as Qwen2Tokenizer, which rebuilds the pipeline
    # from code: the folder only works if ours is the same.
    texts = list(islice(realbase.iter_corpus(5), 300)) + ["Grüße, 東京 👩‍💻 12345 x²\n\n  end"]
    for arch in ("qwen2", "llama"):
        realbase.build_model(tok, arch=arch, num_hidden_layers=1).save_pretrained(tmp_path / arch)
        tok.save_pretrained(tmp_path / arch)
        loaded = AutoTokenizer.from_pretrained(tmp_path / arch)
        assert loaded(texts, add_special_tokens=False)["input_ids"] == tok(texts, add_special_tokens=False)["input_ids"]


def test_make_base_writes_a_folder_any_transformers_script_loads(base):
    assert not (base / "r1lab_template.txt").exists()  # a real folder: the trainer uses its chat template
    config = json.loads((base / "config.json").read_text())
    generation = json.loads((base / "generation_config.json").read_text())
    tok = AutoTokenizer.from_pretrained(base)
    ids = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    assert config["model_type"] == "qwen2" and config["eos_token_id"] == ids[0] and config["pad_token_id"] == ids[1]
    assert generation["eos_token_id"] == ids and generation["pad_token_id"] == ids[1] and generation["do_sample"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(base)], capture_output=True, text=True,
                          cwd=base.parent, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["r1lab_modules"] == []
    assert seen["model_type"] == "qwen2" and 5e6 <= seen["params"] <= 30e6
    assert seen["prompt"].endswith("<|im_start|>assistant\n") and 1 <= seen["new_tokens"] <= 8


def test_make_real_base_builds_a_folder_once(tmp_path):
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out = realbase.make_real_base(tmp_path / "real", steps=20, batch_size=8)
    built_s = time.perf_counter() - t0
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["real"]  # no temporary folder left behind
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert realbase.make_real_base(out, steps=20) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert built_s < 60, built_s  # the tests' fast path (about 10 s on 2 cores)


def test_llama_arch_builds_saves_and_loads(tok, tmp_path):
    torch.set_num_threads(1)
    model = realbase.build_model(tok, arch="llama", seed=1)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert again.config.model_type == "llama" and type(again).__name__ == "LlamaForCausalLM"
    assert 5e6 <= realbase.n_params(again) <= 30e6 and again.config.tie_word_embeddings
    assert again.generation_config.eos_token_id == [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    enc = AutoTokenizer.from_pretrained(tmp_path)("User: 12+30 Assistant:", return_tensors="pt")
    out = again.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_registration_check_reads_the_folder_as_a_qwen2_chat_model(base):
    """What the Base models form shows for it (training_backend.model_info, the inspect-model check)."""
    from training_backend.model_info import inspect_folder
    from training_backend.stage import Info

    info = inspect_folder(base)
    assert info[Info.ARCHITECTURE] == "Qwen2ForCausalLM" and info[Info.VOCAB_SIZE] == 4096
    assert 5e6 <= info[Info.PARAMETERS] <= 30e6 and info[Info.CONTEXT_LENGTH] == 512
    assert info[Info.PREVIEW_CHAT].endswith("<|im_start|>assistant\n") and info[Info.PROMPT_TEMPLATE] is None
    assert all(n == 1 for n in info[Info.TAG_TOKENS].values())  # each R1 tag is one token
