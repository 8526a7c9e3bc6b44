"""Pulling the parts out of a completion: the think span, the final answer, the code block.

Shared by the rewards, the trainer (metrics) and the web UI (rendering a rollout), so that all
three agree on what "the answer" of a completion is. Model output is untrusted: every function
here takes anything (a string, None, bytes, a TRL conversational completion) and never raises.

Conventions (R1's template `<think> … </think> <answer> … </answer>`):
- the answer is the content of the *last* complete `<answer>…</answer>` span (a model that
  answers twice is judged on its final word); when there is none, or it is blank, the content of
  the last `\\boxed{…}` anywhere in the text (open-r1 / math-verify's convention for models that
  box instead of tagging);
- the think span is the content of the first `<think>…</think>`; when the prompt pre-fills the
  opening `<think>` (the R1-Zero template may end with it), a completion that has a `</think>`
  but no `<think>` has everything before that `</think>` as its think span.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
# ```python, ```py, ```python3, optionally with trailing info on the fence line.
_CODE_RE = re.compile(r"```(?:python3?|py)[^\S\n]*[^\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_BOXED_MARKERS = ("\\boxed", "\\fbox")
_MAX_BOX_TRIES = 4


def as_text(completion: object) -> str:
    """The completion as one string, whatever shape it came in; never raises.

    TRL hands conversational completions as `[{"role": "assistant", "content": "..."}]`; bytes
    come from careless callers; None from missing rows. Anything else is `str()`-ed.
    """
    if isinstance(completion, str):
        return completion
    if completion is None:
        return ""
    if isinstance(completion, (bytes, bytearray)):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, Mapping):
        return as_text(completion.get("content"))
    if isinstance(completion, Sequence):
        # Conversational form: the model's text is its messages' contents, in order.
        return "".join(as_text(m.get("content") if isinstance(m, Mapping) else m) for m in completion)
    try:
        return str(completion)
    except (TypeError, ValueError, RecursionError):  # a hostile __str__ is not our problem to raise
        return ""


def _matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the `}` closing the `{` at `open_idx`, honouring nesting and `\\{`; None if unbalanced."""
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # an escaped brace (`\\{`) is content, not structure
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def last_boxed(completion: object) -> str | None:
    """Content of the last balanced `\\boxed{…}` (or `\\fbox{…}`), stripped; None when there is none.

    For nested boxes (`\\boxed{\\boxed{5}}`) the last opening is the inner one, so "5".
    An unbalanced last box falls back to the previous balanced one.
    """
    text = as_text(completion)
    end = len(text)
    # Each unbalanced box costs a scan to the end of the text; a few retries cover real output
    # (a truncated last box) without going quadratic on a flood of `\boxed{`.
    for _ in range(_MAX_BOX_TRIES):
        start = max(text.rfind(marker, 0, end) for marker in _BOXED_MARKERS)
        if start < 0:
            return None
        marker_len = len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox")
        brace = start + marker_len
        while brace < len(text) and text[brace] == " ":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            close = _matching_brace(text, brace)
            if close is not None:
                return text[brace + 1 : close].strip()
        end = start
    return None


def _answer_spans(text: str) -> list[str]:
    # Up to the last closing tag only: linear time on unclosed-tag floods (see extract_think).
    return _ANSWER_RE.findall(text, 0, text.rfind("</answer>") + len("</answer>"))


def extract_answer(completion: object) -> str | None:
    """The final answer: last `<answer>` span's content, else last `\\boxed{}`'s; None if neither."""
    text = as_text(completion)
    spans = _answer_spans(text)
    if spans and spans[-1].strip():
        return spans[-1].strip()
    return last_boxed(text)


def extract_think(completion: object) -> str | None:
    """The chain of thought: first `<think>` span's content (see the module docstring); None if none."""
    text = as_text(completion)
    # Searching only up to the last closing tag keeps the lazy regex linear on hostile input
    # (thousands of unclosed openings would otherwise each scan to the end: quadratic).
    m = _THINK_RE.search(text, 0, text.rfind("</think>") + len("</think>"))
    if m:
        return m.group(1).strip()
    close = text.find("</think>")
    if close >= 0 and "<think>" not in text[:close]:
        return text[:close].strip()
    return None


def extract_code(completion: object) -> str | None:
    """The last ```python block of the answer span (of the whole text when there is no answer span)."""
    text = as_text(completion)
    spans = _answer_spans(text)
    where = spans[-1] if spans and "```" in spans[-1] else text
    blocks = _CODE_RE.findall(where)
    return blocks[-1] if blocks else None
