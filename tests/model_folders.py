"""Hugging Face model folders built here, in a second, for the base-model checks: a small Qwen2 or
Llama with a byte-level BPE tokenizer trained with `tokenizers` on a few lines and a ChatML chat
template (the shape of a Qwen / R1-distill folder), and ways to break one. No downloads."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<answer>", "</answer>"]
LINES = ["User: 12+30 Assistant: <think> 2+0=2, 1+3=4 </think> <answer> 42 </answer>",
         "The quick brown fox jumps over the lazy dog.", "What is 47+85? Let me think step by step."]


def make_hf_folder(path: Path, *, arch: str = "qwen2", chat_template: str | None = CHATML,
                   dtype: str = "float32", tie: bool = True, max_positions: int = 256,
                   vocab_size: int | None = None) -> Path:
    """save_pretrained of a random ~30k-parameter model and its tokenizer (+ generation_config).
    `vocab_size` below the tokenizer's size makes a folder whose ids overflow the embedding."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(LINES * 4, trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIAL,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat_template is not None:
        tok.chat_template = chat_template
    cfg_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    cfg = cfg_cls(vocab_size=vocab_size or len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                  tie_word_embeddings=tie, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = model_cls(cfg).to(getattr(torch, dtype))
    model.generation_config.temperature, model.generation_config.do_sample = 0.6, True
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_tensor(folder: Path, name: str) -> None:
    """Rewrite model.safetensors without one tensor (a checkpoint that lost a weight)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors[name]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def resize_tensor(folder: Path, name: str) -> None:
    """Rewrite model.safetensors with one tensor cut to half its rows (a wrong-shaped weight)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors[name] = tensors[name][: tensors[name].shape[0] // 2].clone()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def set_chat_template(folder: Path, template: str) -> None:
    """Replace the folder's chat template wherever transformers would read it from."""
    (folder / "chat_template.jinja").write_text(template)
