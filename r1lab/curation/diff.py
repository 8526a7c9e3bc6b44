"""Diff between two texts, as a list of (op, text) segments for the templates: by word where
that is affordable, by sentence and line where it is not, and never unbounded.

Tokens are words *and* the whitespace between them, so that joining the "equal" + "insert"
segments gives back the new text exactly and "equal" + "delete" the old one (at every level).
The templates render each segment escaped, in a <span>, <ins> or <del>: never as HTML.

Why bounded (issue 15, finding 7): difflib.SequenceMatcher's cost is the product of the two
lengths *per matching block*, and prose has thousands of small matching blocks (" ", "the"): it
grows roughly with the cube of the text. Two 6,000-word revisions took ~15 s on the history page
(open to viewers); the fields take 200,000 characters (benchmarks/curation.py, history mode). So:

1. the common prefix and suffix are cut off first (linear: most edits are local);
2. the changed middle is diffed word by word when it has at most WORD_DIFF_MAX_TOKENS tokens;
3. above that (or when the word diff runs out of its work budget) it is diffed by sentence and
   line (a long sentence cut further by its content), and each changed passage that is short
   enough is then refined word by word while the budget lasts;
4. when even that runs out of budget, the middle is one deletion and one insertion.

The matcher is SequenceMatcher's own longest-match algorithm (the same diff, autojunk off) with
two changes: it visits only the positions inside the current window (bisect, where difflib walks
every occurrence in the whole text), and it counts the positions it visits against WORK_BUDGET
for the whole call. The bound is deterministic: the same texts always give the same diff, on any
machine, whatever its load; there is no timer.
"""
from __future__ import annotations

import re
import zlib
from bisect import bisect_left
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"\s+|[^\s]+")
# Sentences (up to and including the whitespace after ". ", "? ", "。" ...) inside lines (with
# their "\n"). The second alternative takes what is left of a line with no sentence end.
_LINE_RE = re.compile(r"[^\n]*\n+|[^\n]+")
_SENTENCE_RE = re.compile(r".*?[.!?。！？]+(?:\s+|$)|.+", re.S)
# A sentence longer than this is cut further where its content says (after a word whose CRC-32 is
# 0 mod CUT_EVERY: ~CUT_EVERY words a piece). Content-defined, so an insertion moves only the cuts
# next to it, and the pieces after it still line up; CRC-32, not hash(), so the cuts (and the
# diff) are the same in every process.
LONG_CHUNK_CHARS = 300
CUT_EVERY = 12
_CUT_RE = re.compile(r"(\S+)\s*")

# Above this many tokens in the changed middle (old + new: ~750 words a side), no word diff of
# the whole middle is tried; below it, the work budget decides.
WORD_DIFF_MAX_TOKENS = 3000
# Positions the longest-match search may visit in one call, all levels together. The matcher
# visits 10-14 million a second on the 2-core development machine (measured when this was
# written), so a field's diff costs at most ~0.2 s of CPU whatever its texts; the whole-middle
# word diff may use half of it.
WORK_BUDGET = 2_000_000

WORD, LINE, BLOCK = "word", "line", "block"


@dataclass(frozen=True)
class Segment:
    op: str  # "equal" | "insert" | "delete"
    text: str


@dataclass(frozen=True)
class TextDiff:
    segments: list[Segment]
    level: str  # WORD: every change is shown word by word; LINE: by sentence/line (short passages by word); BLOCK: one deletion + one insertion
    work: int  # positions the matcher visited (WORK_BUDGET at most, plus the one row that crossed it)

    @property
    def changed(self) -> bool:
        return any(s.op != "equal" for s in self.segments)


class _OverBudget(Exception):
    pass


class _Budget:
    def __init__(self, limit: int):
        self.left = limit
        self.spent = 0

    def spend(self, n: int) -> None:
        self.left -= n
        self.spent += n
        if self.left < 0:
            raise _OverBudget

    def attempt(self, fn, *args, limit: int | None = None):
        """fn(*args, budget) on at most `limit` (else all that is left) of this budget; None when
        it ran out. What it spent is spent either way."""
        sub = _Budget(max(0, self.left if limit is None else min(self.left, limit)))
        try:
            return fn(*args, sub)
        except _OverBudget:
            return None
        finally:
            self.left -= sub.spent
            self.spent += sub.spent


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text or "")


def chunks(text: str) -> list[str]:
    """Sentences and lines (long ones cut by content): the units of the coarser diff ("".join(chunks(t)) == t)."""
    out: list[str] = []
    cuts: dict[str, bool] = {}
    for line in _LINE_RE.findall(text or ""):
        for sentence in _SENTENCE_RE.findall(line):
            if len(sentence) <= LONG_CHUNK_CHARS:
                out.append(sentence)
                continue
            start = 0
            for m in _CUT_RE.finditer(sentence):  # a word and the whitespace after it
                word = m.group(1)
                cut = cuts.get(word)
                if cut is None:
                    cut = cuts[word] = zlib.crc32(word.encode()) % CUT_EVERY == 0
                if cut:
                    out.append(sentence[start:m.end()])
                    start = m.end()
            if start < len(sentence):
                out.append(sentence[start:])
    return out


def _opcodes(a: list[str], b: list[str], budget: _Budget) -> list[tuple[str, int, int, int, int]]:
    """SequenceMatcher(None, a, b, autojunk=False).get_opcodes(), with the work counted."""
    b2j: dict[str, list[int]] = {}
    for j, tok in enumerate(b):
        b2j.setdefault(tok, []).append(j)
    budget.spend(len(a) + len(b))

    def longest(alo: int, ahi: int, blo: int, bhi: int) -> tuple[int, int, int]:
        besti, bestj, bestsize = alo, blo, 0
        j2len: dict[int, int] = {}
        budget.spend(ahi - alo)
        for i in range(alo, ahi):
            newj2len: dict[int, int] = {}
            js = b2j.get(a[i])
            if js:
                lo, hi = bisect_left(js, blo), bisect_left(js, bhi)
                budget.spend(hi - lo)
                for x in range(lo, hi):
                    j = js[x]
                    k = newj2len[j] = j2len.get(j - 1, 0) + 1
                    if k > bestsize:
                        besti, bestj, bestsize = i - k + 1, j - k + 1, k
            j2len = newj2len
        return besti, bestj, bestsize

    blocks = []
    queue = [(0, len(a), 0, len(b))]
    while queue:
        alo, ahi, blo, bhi = queue.pop()
        i, j, k = longest(alo, ahi, blo, bhi)
        if k:
            blocks.append((i, j, k))
            if alo < i and blo < j:
                queue.append((alo, i, blo, j))
            if i + k < ahi and j + k < bhi:
                queue.append((i + k, ahi, j + k, bhi))
    blocks.sort()
    codes, i, j = [], 0, 0
    for ai, bj, size in blocks + [(len(a), len(b), 0)]:
        tag = "replace" if i < ai and j < bj else "delete" if i < ai else "insert" if j < bj else ""
        if tag:
            codes.append((tag, i, ai, j, bj))
        if size:
            codes.append(("equal", ai, ai + size, bj, bj + size))
        i, j = ai + size, bj + size
    return codes


class _Out:
    """Segments built up in order; consecutive ones with the same op are merged (joined once)."""

    def __init__(self):
        self._ops: list[str] = []
        self._parts: list[list[str]] = []

    def emit(self, op: str, text: str) -> None:
        if not text:
            return
        if self._ops and self._ops[-1] == op:
            self._parts[-1].append(text)
        else:
            self._ops.append(op)
            self._parts.append([text])

    def replace(self, old: str, new: str) -> None:
        self.emit("delete", old)
        self.emit("insert", new)

    def codes(self, codes, a: list[str], b: list[str]) -> None:
        for tag, i1, i2, j1, j2 in codes:
            if tag == "equal":
                self.emit("equal", "".join(a[i1:i2]))
            else:
                self.replace("".join(a[i1:i2]), "".join(b[j1:j2]))

    def segments(self) -> list[Segment]:
        return [Segment(op, "".join(parts)) for op, parts in zip(self._ops, self._parts)]


def _word_codes(old: str, new: str, budget: _Budget):
    """(old tokens, new tokens, opcodes) of a passage; None when it is too long for a word diff."""
    a, b = tokens(old), tokens(new)
    if len(a) + len(b) > WORD_DIFF_MAX_TOKENS:
        return None
    return a, b, _opcodes(a, b, budget)


def text_diff(old: str, new: str) -> TextDiff:
    """The diff of `old` → `new`, as fine as WORD_DIFF_MAX_TOKENS and WORK_BUDGET allow."""
    old, new = old or "", new or ""
    a, b = tokens(old), tokens(new)
    pre = 0
    while pre < len(a) and pre < len(b) and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < len(a) - pre and suf < len(b) - pre and a[-1 - suf] == b[-1 - suf]:
        suf += 1
    out = _Out()
    out.emit("equal", "".join(a[:pre]))
    mid_a, mid_b = "".join(a[pre:len(a) - suf]), "".join(b[pre:len(b) - suf])
    budget = _Budget(WORK_BUDGET)
    level = WORD
    if mid_a and mid_b:
        # The whole middle word by word may use half the budget; the sentence/line diff and its
        # word refinements get what is left.
        words = budget.attempt(_word_codes, mid_a, mid_b, limit=WORK_BUDGET // 2)
        if words is not None:
            out.codes(words[2], words[0], words[1])
        else:
            level = _by_line(out, mid_a, mid_b, budget)
    else:
        out.replace(mid_a, mid_b)
    out.emit("equal", "".join(a[len(a) - suf:]))
    return TextDiff(segments=out.segments(), level=level, work=budget.spent)


def _by_line(out: _Out, old: str, new: str, budget: _Budget) -> str:
    """Sentence/line diff of a long middle, each changed passage refined word by word while the
    budget lasts; one deletion + one insertion when the sentence diff itself is out of budget."""
    ca, cb = chunks(old), chunks(new)
    codes = budget.attempt(_opcodes, ca, cb)
    if codes is None:
        out.replace(old, new)
        return BLOCK
    for tag, i1, i2, j1, j2 in codes:
        pa, pb = "".join(ca[i1:i2]), "".join(cb[j1:j2])
        if tag == "equal":
            out.emit("equal", pa)
            continue
        refine = tag == "replace" and budget.left > 0 and (pa, pb) != (old, new)  # the whole middle failed already
        words = budget.attempt(_word_codes, pa, pb) if refine else None
        if words is None:
            out.replace(pa, pb)
        else:
            out.codes(words[2], words[0], words[1])
    return LINE


def word_diff(old: str, new: str) -> list[Segment]:
    return text_diff(old, new).segments


def diff_stats(segments: list[Segment]) -> dict:
    words = lambda s: len([t for t in tokens(s.text) if not t.isspace()])  # noqa: E731
    return {
        "inserted": sum(words(s) for s in segments if s.op == "insert"),
        "deleted": sum(words(s) for s in segments if s.op == "delete"),
    }
