"""Dataset files the stages read, validated whole before anything is trained (stdlib only).

Three JSONL formats, one JSON object per line (blank lines are skipped):

- chat (SFT input, rejection-sampling output; what TRL's `SFTTrainer` and
  `datasets.load_dataset("json", ...)` read):
  `{"messages": [{"role": "system"?|"user"|"assistant", "content": str}, ...], ...extra keys}`;
  roles alternate user/assistant after an optional leading system message, the last is the
  assistant's. Extra keys (`id`, `answer`, `provenance`, ...) are kept.
- prompts (GRPO, rejection sampling, eval): `{"id"?: str, "prompt": str, "answer"?: str,
  "type"?: str, "tests"?: [str], "target_lang"?: str}` (config.py's docstring).
- preference pairs (reward-model stage): `{"prompt": str, "chosen": str, "rejected": str}`.

Every bad row is reported with its line number (`DatasetError.errors`, `[(line, message)]`), so
that a stage refuses a half-bad file instead of training on the good half; `python -m
training_backend run` prints them and exits 2.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

MAX_ERRORS_SHOWN = 50


class DatasetError(ValueError):
    """A dataset file that cannot be used; `errors` lists (line number, message), 0 = the file."""

    def __init__(self, path: str | os.PathLike, errors: list[tuple[int, str]]):
        self.path = str(path)
        self.errors = list(errors)
        shown = "; ".join(f"line {n}: {m}" if n else m for n, m in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{self.path}: {shown}{more}")

    def lines(self) -> list[str]:
        """One `path:line: message` per error (at most MAX_ERRORS_SHOWN, then a count)."""
        out = [f"{self.path}:{n}: {m}" if n else f"{self.path}: {m}" for n, m in self.errors[:MAX_ERRORS_SHOWN]]
        if len(self.errors) > MAX_ERRORS_SHOWN:
            out.append(f"{self.path}: ... {len(self.errors) - MAX_ERRORS_SHOWN} more bad rows")
        return out


def read_jsonl(path: str | os.PathLike, check: Callable[[dict], str | None]) -> list[dict]:
    """Rows of a JSONL file, each passed through `check` (message or None); DatasetError with
    every bad line at once. Each row gets its 1-based line number as `_line` (popped by callers
    that write rows back)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, [(0, "file does not exist")])
    rows: list[dict] = []
    errors: list[tuple[int, str]] = []
    with open(p, encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    errors.append((n, f"not valid JSON ({exc.msg} at column {exc.colno})"))
                    continue
                if not isinstance(row, dict):
                    errors.append((n, f"expected a JSON object, got {type(row).__name__}"))
                    continue
                msg = check(row)
                if msg:
                    errors.append((n, msg))
                    continue
                row["_line"] = n
                rows.append(row)
        except UnicodeDecodeError as exc:
            errors.append((0, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    if not rows and not errors:
        errors.append((0, "no rows"))
    if errors:
        raise DatasetError(p, errors)
    return rows


def _is_text(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


def check_chat_row(row: dict) -> str | None:
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty list"
    turns = msgs[1:] if isinstance(msgs[0], dict) and msgs[0].get("role") == "system" else msgs
    if not turns:
        return "no user/assistant messages"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or set(m) - {"role", "content"} - {"name"}:
            return f"message {i} must be an object with 'role' and 'content'"
        if not isinstance(m.get("content"), str):
            return f"message {i}: 'content' must be a string"
    for i, m in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if m.get("role") != want:
            return f"message {i + len(msgs) - len(turns)}: expected role {want!r}, got {m.get('role')!r}"
    if turns[-1]["role"] != "assistant":
        return "the last message must be the assistant's"
    if not any(_is_text(m["content"]) for m in turns if m["role"] == "assistant"):
        return "the assistant's content is empty"
    return None


def check_prompt_row(row: dict) -> str | None:
    if not _is_text(row.get("prompt")):
        return "'prompt' must be a non-empty string"
    for key in ("id", "answer", "type", "target_lang"):
        if row.get(key) is not None and not isinstance(row[key], (str, int, float)):
            return f"'{key}' must be a string"
    tests = row.get("tests")
    if tests is not None and (not isinstance(tests, list) or not all(isinstance(t, str) for t in tests)):
        return "'tests' must be a list of strings"
    return None


def check_preference_row(row: dict) -> str | None:
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(row.get(key), str) or (key != "prompt" and not row[key].strip()):
            return f"'{key}' must be a non-empty string"
    if row["chosen"] == row["rejected"]:
        return "'chosen' and 'rejected' are identical"
    return None


def read_chat_jsonl(path: str | os.PathLike) -> list[dict]:
    return read_jsonl(path, check_chat_row)


def read_prompt_jsonl(path: str | os.PathLike) -> list[dict]:
    """Prompt rows with `id` defaulted to the line number and `answer` as a string."""
    rows = read_jsonl(path, check_prompt_row)
    for r in rows:
        r["id"] = str(r.get("id", r["_line"]))
        if r.get("answer") is not None:
            r["answer"] = str(r["answer"])
    return rows


def prompts_for_step(n_rows: int, per_step: int, step: int, seed: int) -> list[int]:
    """Row indices for `step` (0-based): epochs of seeded permutations, so that any step is
    reproducible on its own (a resumed stage draws exactly the rows it would have)."""
    out, i = [], step * per_step
    while len(out) < per_step:
        epoch, pos = divmod(i, n_rows)
        perm = list(range(n_rows))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        out.append(perm[pos])
        i += 1
    return out


def apply_template(prompt: str, template: str | None) -> str:
    """A prompt as the model sees it: `template` (e.g. R1-Zero's `User: {prompt} Assistant:`)
    around it, or as is."""
    return template.format(prompt=prompt) if template else prompt


def read_preference_jsonl(path: str | os.PathLike) -> list[dict]:
    return read_jsonl(path, check_preference_row)


def chat_prompt_and_answer(row: dict) -> tuple[str, str]:
    """The last user turn and the last assistant turn of a chat row."""
    msgs = row["messages"]
    user = next(m["content"] for m in reversed(msgs) if m["role"] == "user")
    return user, msgs[-1]["content"]


def write_jsonl(rows: list[dict], path: str | os.PathLike) -> None:
    """Atomically (temp file + rename): a reader never sees half a dataset."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if k != "_line"}, ensure_ascii=False) + "\n")
    tmp.replace(p)
