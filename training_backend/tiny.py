"""The tiny local model: a char-level tokenizer, a ~1M-parameter Llama, and the synthetic arithmetic
world in which R1-Zero's phenomena can show on a CPU in minutes. Nothing comes from a model hub.

The world: prompts are additions `a+b` of 2-digit numbers; the R1-Zero template wraps them as
`User: 47+85 Assistant:`. The base model is pretrained on a corpus mixing, on purpose, three
habits of different length and reliability:

- direct answers, no think (`<answer> 132 </answer>`), right only `DIRECT_CORRECT` of the time:
  the short, unreliable habit that dominates the base;
- a quick think that states a guess (`<think> 47+85 is 122. </think> <answer> 122 </answer>`),
  right `GUESS_CORRECT` of the time: a little better, a little longer;
- the same guess followed by ` wait, let me recheck:` and a column-by-column addition with the
  carries written out, always right, whose result is the answer:

      <think> 47+85 is 122? wait, let me recheck: 7+5=12>2, 4+8+1=13>32, c1>132. </think> <answer> 132 </answer>

  (each step adds one column and writes the running result after `>`).

The guesses are noise the model can only imitate (a 2-digit sum recalled in one token is what a
tiny model is bad at), whereas the recheck is an algorithm it can learn: one digit pair and a
carry at a time, each step a lookup. So in the base, reflective traces really are more often
correct, for a reason the model can use, and RL with accuracy + format rewards (nothing for
reflection words) has something real to find: move mass from guessing to rechecking. The three
R1-Zero curves (accuracy, response length, reflection rate) rise when it does.

Where this departs from R1-Zero and why: the "aha" phrase exists in the pretraining corpus (a
1M-parameter model can't invent a new behaviour in minutes; R1-Zero's base had seen such phrases
too, in its web text); the task is one narrow skill.

The tokenizer is character-level plus four whole-word tags (`<think>`, `</think>`, `<answer>`,
`</answer>`) so completions stay short; it is a transformers `PreTrainedTokenizer` that saves
and loads next to the model, so a model folder is self-contained.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizer

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
CHARS = list(" !\"#$%&'()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_abcdefghijklmnopqrstuvwxyz{|}~<>\n")
TEMPLATE = "User: {prompt} Assistant:"
RECHECK = " wait, let me recheck:"

# Corpus mixture (see the module docstring).
P_DIRECT = 0.38  # share of direct answers without think
P_RECHECK = 0.3  # share of think traces that guess, then recheck column by column (of all examples)
DIRECT_CORRECT = 0.3  # direct answers right this often
GUESS_CORRECT = 0.45  # a quick guess inside a think trace is right this often
STEP_ERROR = 0.0  # per column, the recheck's column pass (always right)


class CharTokenizer(PreTrainedTokenizer):
    """Characters plus the four R1 tags as single tokens; `<pad>`=0, `<eos>`=1."""

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | None = None, **kwargs):
        if vocab_file is not None:
            tokens = json.loads(Path(vocab_file).read_text())
        else:
            tokens = ["<pad>", "<eos>", *TAGS, *CHARS]
        self._tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}
        self._split = re.compile("(" + "|".join(re.escape(t) for t in TAGS) + ")")
        kwargs.setdefault("pad_token", "<pad>")
        kwargs.setdefault("eos_token", "<eos>")
        kwargs.setdefault("padding_side", "left")
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        out: list[str] = []
        for part in self._split.split(text):
            if part in TAGS:
                out.append(part)
            else:
                out.extend(c if c in self._ids else "?" for c in part)
        return out

    def _convert_token_to_id(self, token: str) -> int:
        return self._ids.get(token, self._ids["?"])

    def _convert_id_to_token(self, index: int) -> str:
        return self._tokens[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        path = Path(save_directory) / ((filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        path.write_text(json.dumps(self._tokens))
        return (str(path),)

    # Fast paths: the generic PreTrainedTokenizer machinery costs ~100 µs per string, which shows
    # in a 64-completion step; these two are all the trainer needs.
    def encode_fast(self, text: str) -> list[int]:
        return [self._convert_token_to_id(t) for t in self._tokenize(text)]

    def decode_fast(self, ids) -> str:
        return "".join(self._tokens[i] for i in ids if i > 1)


def tiny_config(vocab_size: int, **overrides) -> LlamaConfig:
    """~0.45M parameters: 4 layers, width 96 (half the cost of width 128 on 2 CPU cores, enough here)."""
    kw = dict(vocab_size=vocab_size, hidden_size=96, intermediate_size=256, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
              tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=None, rope_theta=10000.0)
    kw.update(overrides)
    return LlamaConfig(**kw)


def build_model(seed: int = 0, **overrides) -> tuple[LlamaForCausalLM, CharTokenizer]:
    """A freshly initialised tiny Llama and its tokenizer."""
    tok = CharTokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(len(tok), **overrides))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


# --- the synthetic arithmetic world -------------------------------------------------------------

def _columns(a: int, b: int) -> list[tuple[int, int]]:
    da, db = str(a)[::-1], str(b)[::-1]
    return [(int(da[i]) if i < len(da) else -1, int(db[i]) if i < len(db) else -1) for i in range(max(len(da), len(db)))]


def think_pass(a: int, b: int, step_error: float, rng: random.Random) -> tuple[str, str]:
    """One column-by-column pass; each column sum is off by one with prob `step_error`.
    Returns (text, the result it arrives at)."""
    steps, result, carry = [], "", 0
    for x, y in _columns(a, b):
        terms = [str(v) for v in (x, y) if v >= 0] + (["1"] if carry else [])
        s = sum(int(t) for t in terms)
        if rng.random() < step_error:
            s = max(0, s + rng.choice((-1, 1)))
        result = str(s % 10) + result
        carry = s // 10
        steps.append(f"{'+'.join(terms)}={s}>{result}")
    if carry:
        result = "1" + result
        steps.append(f"c1>{result}")
    return ", ".join(steps) + ".", result.lstrip("0") or "0"


def guess(a: int, b: int, p_correct: float, rng: random.Random) -> int:
    """A quick mental answer: a+b with probability p_correct, else off by a typical slip."""
    ans = a + b
    if rng.random() >= p_correct:
        ans = max(0, ans + rng.choice((-1, 1)) * rng.choice((1, 2, 10, 11, 9, 100)))
    return ans


def completion_for(a: int, b: int, rng: random.Random) -> str:
    """One corpus completion (after `Assistant:`), drawn from the mixture above."""
    u = rng.random()
    if u < P_DIRECT:
        return f" <answer> {guess(a, b, DIRECT_CORRECT, rng)} </answer>"
    g = guess(a, b, GUESS_CORRECT, rng)
    if u < P_DIRECT + P_RECHECK:
        text, ans = think_pass(a, b, STEP_ERROR, rng)
        return f" <think> {a}+{b} is {g}?{RECHECK} {text} </think> <answer> {ans} </answer>"
    return f" <think> {a}+{b} is {g}. </think> <answer> {g} </answer>"


def sample_problem(rng: random.Random) -> tuple[int, int]:
    return rng.randint(10, 99), rng.randint(10, 99)


def arithmetic_prompts(n: int, seed: int, exclude: set[tuple[int, int]] | None = None) -> list[dict]:
    """Prompt rows (`{"id", "prompt", "answer", "type"}`) for distinct problems."""
    rng, seen, rows = random.Random(seed), set(exclude or ()), []
    while len(rows) < n:
        a, b = sample_problem(rng)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        rows.append({"id": f"add-{a}-{b}", "prompt": f"{a}+{b}", "answer": str(a + b), "type": "math"})
    return rows


def write_jsonl(rows: list[dict], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def pretrain_loop(model, next_batch, *, steps: int, lr: float, warmup: int, pad_id: int, buckets_of: int = 16,
                  log=print, progress=None) -> None:
    """Causal-LM pretraining, the loop both local bases use: `next_batch()` gives a batch of token-id
    lists (whole examples); AdamW, linear warm-up then cosine to 10%, gradient clipping at 1.

    Examples differ a lot in length (direct answers ~30 tokens, rechecked traces ~100), so a batch is
    sorted into length buckets, each right-padded to its own longest: about half the cost of one
    padded block. Padding is masked by position, not by id (the real base pads with `<|endoftext|>`,
    which also ends every example and must be learned); the loss is the token mean over the batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        ids = sorted(next_batch(), key=len)
        n_tokens = sum(len(r) - 1 for r in ids)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for bucket in (ids[i:i + buckets_of] for i in range(0, len(ids), buckets_of)):
            T = len(bucket[-1])
            x = torch.full((len(bucket), T), pad_id, dtype=torch.long)  # (b, T), right-padded
            mask = torch.zeros(len(bucket), T, dtype=torch.long)  # (b, T)
            for i, r in enumerate(bucket):
                x[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]  # (b, T-1, V)
            target = x[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (b, T-1)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                     ignore_index=-100, reduction="sum") / n_tokens
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if progress is not None:
            progress(step + 1, steps, time.perf_counter() - t0)
        if step % 100 == 0 or step == steps - 1:
            log(f"pretrain step {step}/{steps} loss {total:.3f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()


def pretrain_base(out_dir: str | os.PathLike, *, steps: int = 900, batch_size: int = 32, lr: float = 3e-3,
                  seed: int = 0, holdout: set[tuple[int, int]] | None = None, buckets_of: int = 16,
                  log=print, progress=None) -> Path:
    """Pretrain the tiny model on the synthetic corpus and save it (model + tokenizer) to out_dir.

    Problems in `holdout` never appear in the corpus (the demo's RL prompts and eval split).
    """
    model, tok = build_model(seed)
    rng = random.Random(seed + 1)

    def next_batch() -> list[list[int]]:
        texts = []
        while len(texts) < batch_size:
            a, b = sample_problem(rng)
            if holdout and (a, b) in holdout:
                continue
            texts.append(TEMPLATE.format(prompt=f"{a}+{b}") + completion_for(a, b, rng))
        return [tok.encode_fast(t) + [tok.eos_token_id] for t in texts]

    pretrain_loop(model, next_batch, steps=steps, lr=lr, warmup=100, pad_id=tok.pad_token_id, buckets_of=buckets_of,
                  log=log, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


DEMO_SEED = 1234


def demo_splits(n_train: int = 1024, n_eval: int = 128) -> tuple[list[dict], list[dict]]:
    """The miniature R1-Zero's RL prompts and its held-out eval prompts (disjoint, fixed)."""
    rows = arithmetic_prompts(n_train + n_eval, DEMO_SEED)
    return rows[:n_train], rows[n_train:]


def demo_holdout() -> set[tuple[int, int]]:
    """Problems make-base keeps out of the pretraining corpus: all of the demo's prompts."""
    train, evals = demo_splits()
    return {tuple(int(x) for x in r["prompt"].split("+")) for r in train + evals}
