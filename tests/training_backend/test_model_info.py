"""inspect-model: what a model folder is, read the way the trainer loads it, or why it is refused.

Folders are built here (tests/model_folders.py: a Qwen2/Llama with a BPE tokenizer and a ChatML
template; the char model that make-base writes); each refusal is one way a downloaded or copied
folder really breaks."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.model_folders import (CHATML, copy_folder, drop_tensor, edit_json, make_hf_folder, resize_tensor,
                                 set_chat_template)
from tests.training_backend.stage_factories import make_model
from training_backend import tiny
from training_backend.model_info import FolderRefused, inspect_folder
from training_backend.stage import ExitCode, Info, parse_model_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    return make_hf_folder(tmp_path_factory.mktemp("qwen") / "model")


def test_a_qwen2_folder_with_a_chat_template(qwen):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = inspect_folder(qwen)

    tok = AutoTokenizer.from_pretrained(qwen)
    model = AutoModelForCausalLM.from_pretrained(qwen)
    assert info[Info.ARCHITECTURE] == "Qwen2ForCausalLM" and info[Info.MODEL_TYPE] == "qwen2"
    assert info[Info.PARAMETERS] == model.num_parameters()  # tied embedding counted once
    assert (info[Info.DTYPE], info[Info.WEIGHT_DTYPES]) == ("float32", {"float32": model.num_parameters()})
    assert (info[Info.CONTEXT_LENGTH], info[Info.VOCAB_SIZE], info[Info.TOKENIZER_SIZE]) == (256, len(tok), len(tok))
    assert info[Info.CHAT_TEMPLATE] == CHATML
    assert info[Info.PREVIEW_RAW] == "User: 47+85 Assistant: <think>"
    expected = tok.apply_chat_template([{"role": "user", "content": "47+85"}], tokenize=False, add_generation_prompt=True)
    assert info[Info.PREVIEW_CHAT] == expected == "<|im_start|>user\n47+85<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert info[Info.PREVIEW_CHAT_TOKENS] == len(tok(expected, add_special_tokens=False)["input_ids"])
    assert info[Info.TAG_TOKENS]["<think>"] == 1 and info[Info.SPECIAL_TOKENS]["eos_token"] == "<|im_end|>"
    assert info[Info.GENERATION]["temperature"] == 0.6 and info[Info.WARNINGS] == []
    json.dumps(info)  # stored as JSON as is


def test_a_bf16_llama_without_chat_template_and_the_char_model(tmp_path):
    llama = inspect_folder(make_hf_folder(tmp_path / "llama", arch="llama", chat_template=None, dtype="bfloat16",
                                          tie=False, max_positions=1024))
    assert (llama[Info.ARCHITECTURE], llama[Info.DTYPE], llama[Info.CONTEXT_LENGTH]) == ("LlamaForCausalLM", "bfloat16", 1024)
    assert llama[Info.CHAT_TEMPLATE] is None and llama[Info.PREVIEW_CHAT] is None

    char = inspect_folder(make_model(tmp_path / "char"))  # what make-base writes (untrained)
    assert (char[Info.ARCHITECTURE], char[Info.TOKENIZER_CLASS]) == ("LlamaForCausalLM", "CharTokenizer")
    assert char[Info.VOCAB_SIZE] == char[Info.TOKENIZER_SIZE] == len(tiny.CharTokenizer())
    assert char[Info.PROMPT_TEMPLATE] == tiny.TEMPLATE and char[Info.CHAT_TEMPLATE] is None
    assert char[Info.TAG_TOKENS] == {"<think>": 1, "</think>": 1, "<answer>": 1, "</answer>": 1}


def test_odd_values_in_an_untrusted_file_are_stored_bounded_and_finite(qwen, tmp_path):
    folder = copy_folder(qwen, tmp_path / "m")  # jsonb has no NaN; a page has no room for 10k ids
    edit_json(folder / "generation_config.json", temperature=float("nan"), eos_token_id=list(range(10_000)),
              top_k={"nested": "x" * 10_000})
    info = inspect_folder(folder)
    assert info[Info.GENERATION]["temperature"] == "nan" and info[Info.GENERATION]["eos_token_id"] == list(range(16))
    assert len(info[Info.GENERATION]["top_k"]) == 100
    json.dumps(info, allow_nan=False)


def _break(folder: Path, how: str) -> None:
    if how == "no config":
        (folder / "config.json").unlink()
    elif how == "unknown architecture":
        edit_json(folder / "config.json", model_type="frobnicator", architectures=["FrobnicatorForCausalLM"])
    elif how == "custom code":
        edit_json(folder / "config.json", auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    elif how == "not a causal LM":
        edit_json(folder / "config.json", model_type="clip_vision_model", architectures=["CLIPVisionModel"])
    elif how == "no weights":
        (folder / "model.safetensors").unlink()
    elif how == "a missing tensor":
        drop_tensor(folder, "model.layers.1.mlp.up_proj.weight")
    elif how == "a wrong shape":
        resize_tensor(folder, "model.layers.0.mlp.down_proj.weight")
    elif how == "a shard outside the folder":
        (folder / "model.safetensors").rename(folder / "shard.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../shard.safetensors"}}))
    elif how == "not safetensors":
        (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    elif how == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            (folder / name).unlink()
    elif how == "unreadable tokenizer":
        (folder / "tokenizer.json").write_text("{not json")
    elif how == "a template reaching for internals":  # what the sandbox is for
        set_chat_template(folder, "{{ messages.__class__.__mro__[1].__subclasses__() }}")
    elif how == "a template that raises":
        set_chat_template(folder, "{{ raise_exception('only system turns') }}")


@pytest.mark.parametrize("how,reason", [
    ("no config", "no config.json"),
    ("unknown architecture", "cannot read config.json"),
    ("custom code", "custom code"),
    ("not a causal LM", "not a causal language model"),
    ("no weights", "missing weights: no model.safetensors"),
    ("a missing tensor", "missing weights: 1 tensor(s) of Qwen2ForCausalLM are not in the checkpoint (model.layers.1.mlp.up_proj.weight)"),
    ("a wrong shape", "weights of the wrong shape: 1 tensor(s), e.g. model.layers.0.mlp.down_proj.weight: (16, 64) "
                      "in the checkpoint, (32, 64) in the model"),
    ("a shard outside the folder", "names a shard outside the folder"),
    ("not safetensors", "not a safetensors file"),
    ("no tokenizer", "no tokenizer"),
    ("unreadable tokenizer", "the tokenizer does not load"),
    ("tokenizer larger than the embedding", "but the model's embedding has 100 rows"),
    ("a template reaching for internals", "the chat template does not render a user turn: SecurityError"),
    ("a template that raises", "the chat template does not render a user turn: TemplateError: only system turns"),
])
def test_a_folder_the_trainer_cannot_load_is_refused_with_the_reason(qwen, tmp_path, how, reason):
    if how == "tokenizer larger than the embedding":
        folder = make_hf_folder(tmp_path / "m", vocab_size=100)
    else:
        folder = copy_folder(qwen, tmp_path / "m")
        _break(folder, how)
    with pytest.raises(FolderRefused) as exc:
        inspect_folder(folder)
    assert reason in str(exc.value)


def _cli(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training_backend", "inspect-model", str(folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_huge_template_fails_under_the_memory_limit_and_the_cli_says_why(qwen, tmp_path):
    """A template that builds a 4 GB string: the address-space limit turns it into a MemoryError
    (a refusal, exit 2) instead of a process that eats the host. (The CLI's success line is read
    by tests/pipelines/test_base_models.py through the web side.)"""
    folder = copy_folder(qwen, tmp_path / "m")
    set_chat_template(folder, "{{ 'x' * 4000000000 }}")
    t0 = time.monotonic()
    bad = _cli(folder)
    assert bad.returncode == ExitCode.BAD_SPEC, bad.stderr[-2000:]
    assert parse_model_check(bad.stdout) == (None, "the chat template does not render a user turn: MemoryError")
    assert time.monotonic() - t0 < 60
