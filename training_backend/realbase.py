"""A real-architecture local base model: a byte-level BPE tokenizer with a ChatML chat template and a
~7M-parameter transformers Qwen2 (or Llama), pretrained here, on a CPU in minutes, on the synthetic
arithmetic world of `training_backend.tiny` plus a little English. Nothing comes from a model hub.

The folder it writes has the shape of a Qwen2.5 / R1-distill folder (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json with the chat template) and loads with
`AutoTokenizer` + `AutoModelForCausalLM` alone: no r1lab code, no `r1lab_template.txt` (a real folder
has none; the trainer prompts it through its chat template).

The corpus (deterministic from a seed; each pretraining example is drawn fresh from a seeded rng):

- `MIX["raw"]`  arithmetic in the R1-Zero template, `tiny.TEMPLATE` + a `tiny.completion_for`
  completion + `<|endoftext|>`: `User: 47+85 Assistant: <think> ... </think> <answer> 132 </answer>`;
- `MIX["chat"]` the same problems and completions as ChatML conversations: user = `47+85`, assistant =
  the completion stripped, `<|im_end|>` closing the turn, then `<|endoftext|>`; `P_SYSTEM` of them open
  with a system turn, so that a system prompt does not throw the model off;
- `MIX["story"]` word problems from a small template grammar (`Ana has 47 apples and finds 85 more. ...`);
- `MIX["prose"]` sentences from a small template grammar;
- `MIX["docs"]`  paragraphs of the docstrings of `DOC_MODULES` (stdlib, read with `inspect.getdoc`:
  deterministic for one Python version), cut to `MAX_TOKENS`.

Problems in `holdout` (the demo's RL and eval prompts) never appear, neither as `a+b` nor in a word
problem. The tokenizer is trained once on `TOKENIZER_EXAMPLES` draws of the same mixture plus every
docstring paragraph, so that its vocabulary is English-shaped and not only digits.

The tokenizer is Qwen2's pipeline (NFC, a regex split with one piece per digit, ByteLevel without a
prefix space) and not a plain `ByteLevel` pre-tokenizer: transformers 5 loads every qwen2 folder's
tokenizer as `Qwen2Tokenizer`, which rebuilds that pipeline from code and ignores tokenizer.json's,
so any other one would tokenize differently after save + load than in pretraining. As in Qwen / R1
tokenizers, `<think>` `</think>` `<answer>` `</answer>` are single, *non-special* added tokens, so
`decode(..., skip_special_tokens=True)` keeps them.

Where this departs from Qwen2.5 and why: a 4,096-token vocabulary (151k would be 97% of the
parameters); the chat template injects no default system prompt (Qwen2.5 adds "You are Qwen, ...")
and has no tool calls; rope_theta 10,000 for a 512-token context.
"""

from __future__ import annotations

import inspect
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from training_backend import tiny

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # skipped by skip_special_tokens
TAG_TOKENS = tiny.TAGS  # <think> </think> <answer> </answer>: single ids, kept by skip_special_tokens

# ChatML as Qwen2.5 ships it, less the default system prompt and the tools: one
# `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n` to prompt.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Corpus mixture (see the module docstring): share of pretraining examples of each kind.
MIX = {"raw": 0.36, "chat": 0.36, "story": 0.12, "prose": 0.06, "docs": 0.10}
P_SYSTEM = 0.25  # chat examples that open with a system turn
SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are a careful assistant. Think, then answer.",
                  "Solve the problem. Put the final answer in <answer> </answer> tags.")
MAX_TOKENS = 160  # longer examples (docstring paragraphs) are cut here
TOKENIZER_EXAMPLES = 6000  # mixture draws the tokenizer is trained on (plus every docstring paragraph)
DOC_MODULES = ("argparse", "base64", "bisect", "calendar", "collections", "colorsys", "contextlib", "copy",
               "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools",
               "gettext", "glob", "heapq", "hashlib", "html", "inspect", "ipaddress", "itertools", "json",
               "logging", "operator", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched",
               "shlex", "shutil", "statistics", "string", "tempfile", "textwrap", "threading", "timeit",
               "tokenize", "traceback", "typing", "unittest", "urllib.parse", "uuid", "warnings", "zipfile")

# Qwen2's pre-tokenizer regex (transformers' tokenization_qwen2.PRETOKENIZE_REGEX): GPT-2's, except
# that every digit is its own piece (`\p{N}`, not `\p{N}+`), so numbers are never merged.
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

ARCHS = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
# ~6.8M parameters with the 4,096-token vocabulary (1.05M of them the tied embedding).
MODEL_DEFAULTS = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=8, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                      rope_theta=10000.0)


def chatml(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """What CHATML_TEMPLATE renders, without jinja (the corpus is rendered millions of times)."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


# --- the corpus ----------------------------------------------------------------------------------

NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
         "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tomas", "Uma", "Vera", "Wen", "Yusuf")
THINGS = ("apples", "books", "coins", "marbles", "stamps", "shells", "pencils", "cards", "eggs", "stones",
          "tickets", "cookies", "flowers", "boxes", "letters", "songs")
GAINS = ("finds", "buys", "is given", "collects", "wins", "picks up", "bakes", "receives")
ADJS = ("small", "quiet", "old", "bright", "heavy", "clever", "green", "patient", "narrow", "warm", "busy",
        "strange", "simple", "careful", "early", "gentle")
NOUNS = ("river", "teacher", "garden", "machine", "student", "window", "library", "farmer", "city", "bridge",
         "program", "kitchen", "market", "letter", "mountain", "engine", "question", "answer", "number")
VERBS = ("watches", "follows", "opens", "counts", "builds", "reads", "carries", "finds", "checks", "explains",
         "remembers", "changes", "measures", "crosses", "writes", "solves")
PREPS = ("near", "behind", "inside", "under", "across", "beside", "before", "after")
CLAUSES = ("because it was late", "when the sun came up", "and nobody noticed", "while it was raining",
           "before the market opened", "after a long day", "so the work was done", "and then it rested")


def _problem(rng: random.Random, holdout) -> tuple[int, int]:
    while True:
        a, b = tiny.sample_problem(rng)
        if not holdout or (a, b) not in holdout:
            return a, b


def raw_example(a: int, b: int, rng: random.Random) -> str:
    return tiny.TEMPLATE.format(prompt=f"{a}+{b}") + tiny.completion_for(a, b, rng) + ENDOFTEXT


def chat_example(a: int, b: int, rng: random.Random) -> str:
    messages = [{"role": "user", "content": f"{a}+{b}"},
                {"role": "assistant", "content": tiny.completion_for(a, b, rng).strip()}]
    if rng.random() < P_SYSTEM:
        messages.insert(0, {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    return chatml(messages) + ENDOFTEXT


def story_example(a: int, b: int, rng: random.Random) -> str:
    name, thing, gain = rng.choice(NAMES), rng.choice(THINGS), rng.choice(GAINS)
    text = (f"{name} has {a} {thing} and {gain} {b} more. How many {thing} does {name} have now? "
            f"{name} has {a} + {b} = {a + b} {thing}.")
    return text + ENDOFTEXT


def prose_example(rng: random.Random) -> str:
    def sentence() -> str:
        s = (f"The {rng.choice(ADJS)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
             f"{rng.choice(PREPS)} the {rng.choice(ADJS)} {rng.choice(NOUNS)}")
        return (s + (" " + rng.choice(CLAUSES) if rng.random() < 0.5 else "")) + "."
    return " ".join(sentence() for _ in range(rng.randint(1, 4))) + ENDOFTEXT


def doc_paragraphs() -> list[str]:
    """Paragraphs (blank-line separated) of the docstrings of DOC_MODULES and their public members,
    in a fixed order: the same list for one Python version."""
    import importlib

    paras: list[str] = []
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module)]
        for attr in sorted(getattr(module, "__all__", None) or dir(module)):
            obj = getattr(module, attr, None)
            if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if getattr(obj, "__module__", None) in (name, "_" + name.split(".")[-1]):  # its own, not re-exported
                docs.append(inspect.getdoc(obj))
        for doc in docs:
            for p in re.split(r"\n\s*\n", doc or ""):
                if len(p) >= 40 and any(c.isalpha() for c in p):
                    paras.append(p.strip())
    return list(dict.fromkeys(paras))  # same text once, first position kept


def iter_corpus(seed: int = 0, holdout: set[tuple[int, int]] | None = None,
                docs: list[str] | None = None) -> Iterator[str]:
    """Endless pretraining examples drawn from MIX, each ending with `<|endoftext|>` (docs may be cut)."""
    rng = random.Random(seed)
    docs = doc_paragraphs() if docs is None else docs
    kinds, weights = list(MIX), list(MIX.values())
    while True:
        kind = rng.choices(kinds, weights)[0]
        if kind == "raw":
            yield raw_example(*_problem(rng, holdout), rng)
        elif kind == "chat":
            yield chat_example(*_problem(rng, holdout), rng)
        elif kind == "story":
            yield story_example(*_problem(rng, holdout), rng)
        elif kind == "prose":
            yield prose_example(rng)
        else:
            yield rng.choice(docs) + ENDOFTEXT


# --- the tokenizer -------------------------------------------------------------------------------

def build_tokenizer(texts: list[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Qwen2's pre-tokenizer (NFC, one piece per digit, then ByteLevel) trained
    on `texts`, with the three ChatML special tokens and the four R1 tags as single ids;
    `len(tok) == vocab_size`."""
    bpe = Tokenizer(models.BPE())
    # Qwen2's pipeline, exactly: transformers (5.x) loads a qwen2 folder's tokenizer as
    # Qwen2Tokenizer, which rebuilds these three from code and ignores tokenizer.json's own;
    # any other pipeline would tokenize differently once saved and loaded.
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    # The special tokens and tags are whole ids: strip them from the training text so that no merge
    # is spent on their pieces.
    strip = re.compile("|".join(re.escape(t) for t in (*SPECIAL_TOKENS, *TAG_TOKENS)))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(TAG_TOKENS), special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator((strip.sub("\n", t) for t in texts), trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=IM_END, pad_token=ENDOFTEXT,
                                   chat_template=CHATML_TEMPLATE, padding_side="left", model_max_length=512)


# --- the model -----------------------------------------------------------------------------------

def build_model(tok, arch: str = "qwen2", seed: int = 0, **overrides):
    """A freshly initialised transformers Qwen2ForCausalLM / LlamaForCausalLM sized for `tok`
    (MODEL_DEFAULTS, then `overrides`), with Qwen's generation config: stop at `<|im_end|>` or
    `<|endoftext|>`, sample at temperature 1.0 (the base's own distribution, as the RL demo needs)."""
    config_cls, model_cls = ARCHS[arch]
    im_end, eot = tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(ENDOFTEXT)
    kw = dict(MODEL_DEFAULTS, vocab_size=len(tok), bos_token_id=None, eos_token_id=im_end, pad_token_id=eot)
    kw.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kw))
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = None, [im_end, eot], eot
    gc.do_sample, gc.temperature, gc.top_p, gc.top_k = True, 1.0, 1.0, 0
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --- pretraining ---------------------------------------------------------------------------------

def pretrain_real_base(out_dir: str | os.PathLike, *, arch: str = "qwen2", steps: int = 900, batch_size: int = 32,
                       lr: float = 2e-3, seed: int = 0, holdout: set[tuple[int, int]] | None = None,
                       buckets_of: int = 16, log=print, progress=None) -> Path:
    """Train the tokenizer on the corpus, build the model, pretrain it (causal LM, loss on every token
    but padding), and save_pretrained model + tokenizer to out_dir. Problems in `holdout` never appear
    in the corpus. `progress(step, total, elapsed_s)` is called after every step.

    What `measure_base` finds (greedy, 32 held-out problems), 1 thread on 2 shared CPU cores:
    - 300 steps of 32 (~6 min): every answer, raw and chat, in the `<think> ... </think> <answer> N
      </answer>` format, none right: the layout is learned long before the digits (loss ~1.9);
    - 900 steps (the default; 18 min at load ~3): the format always, the sum right 11/32 raw and
      10/32 chat (the loss falls from ~1.9 to ~0.7 between steps 300 and 500), about the tiny base's
      ~0.3 — a base the miniature R1-Zero can start from."""
    t0 = time.perf_counter()
    docs = doc_paragraphs()
    sample = iter_corpus(seed + 2, holdout, docs)
    tok = build_tokenizer(docs + [next(sample) for _ in range(TOKENIZER_EXAMPLES)])
    model = build_model(tok, arch, seed)
    log(f"{arch} base: {n_params(model) / 1e6:.2f}M parameters, vocabulary {len(tok)} "
        f"(tokenizer trained in {time.perf_counter() - t0:.1f}s)")
    corpus = iter_corpus(seed + 1, holdout, docs)

    def next_batch() -> list[list[int]]:  # examples up to MAX_TOKENS (docstring paragraphs are cut)
        return tok([next(corpus) for _ in range(batch_size)], add_special_tokens=False, truncation=True,
                    max_length=MAX_TOKENS)["input_ids"]

    tiny.pretrain_loop(model, next_batch, steps=steps, lr=lr, warmup=max(1, min(100, steps // 10)),
                       pad_id=tok.pad_token_id, buckets_of=buckets_of, log=log, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_real_base(path: str | os.PathLike, steps: int = 20, batch_size: int = 8, arch: str = "qwen2",
                   **kwargs) -> Path:
    """A real base folder at `path`, built once: kept as it is when `path/config.json` exists.
    Built in a sibling temporary folder and renamed, so a half-written folder is never taken for one."""
    path = Path(path)
    if (path / "config.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    try:
        pretrain_real_base(tmp, arch=arch, steps=steps, batch_size=batch_size, log=lambda s: None, **kwargs)
        if path.exists():  # an empty or half-written folder from an earlier crash
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


# --- how well a base answers ---------------------------------------------------------------------

_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"
CORPUS_FORMAT = re.compile(rf"\s*(?:<think>{_NO_TAG}</think>\s*)?<answer>\s*(-?\d+)\s*</answer>\s*", re.DOTALL)


def measure_base(path: str | os.PathLike, n: int = 32, max_new_tokens: int = 96) -> dict:
    """Greedy answers of a saved folder to the first n of the demo's eval problems (held out of
    make-base's corpus), prompted raw (`tiny.TEMPLATE`) and through the chat template:
    per mode, the share in the corpus format (`[<think> ... </think>] <answer> N </answer>`),
    the share with a think span too (R1's format), and the share correct."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    rows = tiny.demo_splits()[1][:n]
    prompts = {"raw": [tiny.TEMPLATE.format(prompt=r["prompt"]) for r in rows],
               "chat": [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                                add_generation_prompt=True) for r in rows]}
    out = {}
    for mode, texts in prompts.items():
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        completions = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        matches = [CORPUS_FORMAT.fullmatch(c) for c in completions]
        out[mode] = {"format": sum(m is not None for m in matches) / n,
                     "think_format": sum(m is not None and "<think>" in c for m, c in zip(matches, completions)) / n,
                     "correct": sum(m is not None and m.group(1) == r["answer"] for m, r in zip(matches, rows)) / n,
                     "example": completions[0]}
    return out
