"""Loading a model folder and turning prompts into the text it is trained on: the one path every
stage (grpo, sft, rejection sampling, reward model, eval) takes for any Hugging Face causal-LM
folder — a Qwen2 / Llama checkpoint with a byte-level BPE tokenizer and a chat template, or the
project's tiny char-level model.

Prompt formats (config field `prompt_format`, every stage that renders prompts has it):

- `auto` (default): the folder's `r1lab_template.txt` when it has one (the tiny model's
  `User: {prompt} Assistant:`; a stage hands its template on to its final model), else the
  tokenizer's chat template when it has one, else the prompt as is;
- `r1_zero`: a raw template with no chat markup (GRPO straight from a base model): the stage's
  `prompt_template` setting, else the folder's `r1lab_template.txt`, else the DeepSeek-R1 report's
  R1-Zero template (Table 1), `R1_ZERO_TEMPLATE`;
- `chat`: `apply_chat_template([system?, user], add_generation_prompt=True)`, with `system_prompt`
  as the system turn when set; a tokenizer without a chat template is a config error (exit 2);
- `none`: the prompt text as is.

Stop tokens: a completion ends at the tokenizer's EOS or at any id of the folder's
generation_config `eos_token_id` (an int or a list: a Qwen2.5-Instruct folder stops on both
`<|im_end|>` and `<|endoftext|>`), as `generate` would.

No remote code: AutoTokenizer / AutoModelForCausalLM with trust_remote_code=False.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

PROMPT_FORMATS = ("auto", "r1_zero", "chat", "none")

# DeepSeek-R1 report, Table 1 (the template of DeepSeek-R1-Zero); `{prompt}` is the question.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {prompt}. Assistant:")

# The project's char-level tokenizer names itself in tokenizer_config.json; transformers does not know
# the class (it lives in training_backend.tiny), so AutoTokenizer cannot build it: this name check is
# the one place the tiny model's tokenizer differs from any other folder's, and it must stay while
# `make-base --arch tiny` writes such folders.
CHAR_TOKENIZER = "CharTokenizer"


def load_tokenizer(path: str | os.PathLike):
    """The folder's tokenizer: AutoTokenizer (no remote code), or the tiny char tokenizer by name."""
    folder = Path(path)
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") == CHAR_TOKENIZER:
        from training_backend.tiny import CharTokenizer

        return CharTokenizer.from_pretrained(str(folder))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tok.pad_token_id is None:  # Llama-style folders ship none; the engines pad with it, masks hide it
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(path: str | os.PathLike, dtype=None):
    """(AutoModelForCausalLM, tokenizer) of a folder written by save_pretrained; float32 unless `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32, trust_remote_code=False)
    return model, tok


R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def text_codec(tok) -> tuple[Callable[[str], list[int]], Callable[[list[int]], str]]:
    """(encode, decode): plain text <-> ids, no BOS/EOS added, special tokens dropped on decode —
    except the R1 tags.

    Chat markup in the text (`<|im_start|>`…) is split into its special ids by any HF tokenizer.
    `<think>`/`<answer>` survive decoding when the tokenizer marks them non-special, as Qwen's and the
    R1 distills' do; a tokenizer that registered them as special tokens would have
    `skip_special_tokens` erase them, and every format and accuracy reward read a tag-less text:
    for such a tokenizer the ids are decoded in runs between the tags, the tags put back as text.
    The tiny char tokenizer brings its own fast paths (`encode_fast`, `decode_fast`: the generic
    PreTrainedTokenizer machinery costs ~100 µs a string, which shows in a 64-completion step on the
    1M-parameter model); every other tokenizer goes through `__call__` / `decode`."""
    if hasattr(tok, "encode_fast"):
        return tok.encode_fast, tok.decode_fast

    def encode(s: str) -> list[int]:
        return tok(s, add_special_tokens=False)["input_ids"]

    def plain(ids) -> str:
        return tok.decode(ids, skip_special_tokens=True)

    tags = {}
    for t in R1_TAGS:
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tok.unk_token_id and plain([i]) == "":
            tags[i] = t
    if not tags:
        return encode, plain

    def decode(ids) -> str:
        out, run = [], []
        for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
            if i in tags:
                out += [plain(run), tags[i]]
                run = []
            else:
                run.append(i)
        return "".join([*out, plain(run)])

    return encode, decode


def stop_token_ids(model, tok) -> list[int]:
    """The ids a completion stops at: the tokenizer's EOS first, then generation_config's eos ids."""
    ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in ([gen] if isinstance(gen, int) else list(gen or ())):
        if isinstance(i, int) and i not in ids:
            ids.append(i)
    if not ids:
        raise ValueError("the tokenizer has no EOS token and generation_config.json names none: "
                         "a completion could never end")
    return ids


class PromptRenderer:
    """prompt text -> the text the model reads (see the module docstring); `kind` is what it does:
    "template" (a `{prompt}` template), "chat" (the tokenizer's chat template) or "none"."""

    def __init__(self, kind: str, *, template: str | None = None, tok=None, system_prompt: str = ""):
        self.kind, self.template, self.tok, self.system_prompt = kind, template, tok, system_prompt

    def messages(self, prompt: str) -> list[dict]:
        sys_turn = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*sys_turn, {"role": "user", "content": prompt}]

    def __call__(self, prompt: str) -> str:
        if self.kind == "template":
            return self.template.format(prompt=prompt)
        if self.kind == "chat":
            return self.tok.apply_chat_template(self.messages(prompt), tokenize=False, add_generation_prompt=True)
        return prompt

    def describe(self) -> dict:
        """What outputs.json records of it."""
        return {"kind": self.kind, **({"template": self.template} if self.kind == "template" else {}),
                **({"system_prompt": self.system_prompt} if self.system_prompt else {})}


def has_chat_template(tok) -> bool:
    return bool(getattr(tok, "chat_template", None))


def prompt_renderer(tok, template: str | None, prompt_format: str = "auto", system_prompt: str = "",
                    prompt_template: str = "") -> PromptRenderer:
    """The renderer for a stage: `template` is the folder's r1lab_template.txt (None without one),
    `prompt_template` the stage's own (config; wins over the folder's for r1_zero, and makes auto
    use it). A `chat` format on a tokenizer without a chat template raises ConfigError."""
    from training_backend.config import ConfigError

    template = prompt_template or template
    if prompt_format == "auto":
        prompt_format = "r1_zero" if template else ("chat" if has_chat_template(tok) else "none")
    if prompt_format == "r1_zero":
        return PromptRenderer("template", template=template or R1_ZERO_TEMPLATE)
    if prompt_format == "chat":
        if not has_chat_template(tok):
            raise ConfigError({"prompt_format": "chat needs a tokenizer with a chat template; this model folder's "
                                                "tokenizer has none (use r1_zero or none)"})
        return PromptRenderer("chat", tok=tok, system_prompt=system_prompt)
    if prompt_format == "none":
        return PromptRenderer("none")
    raise ConfigError({"prompt_format": f"unknown format {prompt_format!r}; one of {', '.join(PROMPT_FORMATS)}"})
