"""Steps of a chain of thought, and the per-step verdicts on them (issue 18). Pure, no ORM.

A project splits reasoning into steps by one rule (`CurationProject.step_split`):

- `paragraphs`: blocks separated by a blank line;
- `lines`: every non-empty line;
- `sentences`: sentences (after `.`, `!`, `?` and a space, or `。！？`), inside lines; not after a
  decimal point, an abbreviation (`e.g.`, `i.e.`, `vs.` …) or a list marker (`1.`), and never
  inside math (`$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]`);
- `numbered`: a step starts at each line that opens with `Step 3`, `3.` or `3)` (markdown `#`/`**`
  allowed before it); text before the first one is a step of its own. No such line: paragraphs;
- `auto` (the default): numbered when there are two or more numbered lines, else paragraphs when
  there are two or more, else sentences.

A step is the text between two cuts with its surrounding whitespace left out; its span in the
reasoning is kept (the exports' Argilla spans are these). At most MAX_STEPS steps: the rest of a
longer text is the last step, so a 200,000-character trace never becomes 20,000 radio groups.

Verdicts are keyed by the step's text (a hash), not its position: when someone edits step 3, the
verdicts on the other steps still hold, and the one on step 3 no longer applies (it is "stale").
The first wrong step is derived, never stored: the earliest step labelled incorrect, provided
every step before it has a label (else it is not known yet); -1 when every step is labelled and
none is incorrect (ProcessBench's convention).
"""
from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections import Counter, defaultdict, deque
from dataclasses import dataclass

CORRECT, INCORRECT, NEUTRAL = "correct", "incorrect", "neutral"
LABELS = (CORRECT, INCORRECT, NEUTRAL)

PARAGRAPHS, LINES, SENTENCES, NUMBERED, AUTO = "paragraphs", "lines", "sentences", "numbered", "auto"
RULES = (AUTO, PARAGRAPHS, LINES, SENTENCES, NUMBERED)
RULE_CHOICES = [
    (AUTO, "auto: numbered steps if any, else paragraphs, else sentences"),
    (PARAGRAPHS, "paragraphs (a blank line between steps)"),
    (LINES, "lines (every non-empty line)"),
    (SENTENCES, "sentences"),
    (NUMBERED, "numbered steps (Step 1, 1., 1) at the start of a line)"),
]
MAX_STEPS = 400
MAX_NOTE = 500

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_LINE_BREAK = re.compile(r"\n\s*")
_NUMBERED_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:step[ \t]*\d+\b|\d{1,3}[.)](?=\s))", re.I | re.M)
# A sentence ends at . ! ? (and closing quotes/brackets) followed by whitespace, or at CJK end marks.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|[。！？]+[」』”’)]*")
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "fig.", "eq.", "no.", "dr.", "mr.", "mrs.", "ms.", "st."})
_LIST_MARKER = re.compile(r"^(?:step[ \t]*)?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[.)]$", re.I)
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)


@dataclass(frozen=True)
class Step:
    index: int
    start: int  # span in the reasoning: reasoning[start:end] == text
    end: int
    text: str

    @property
    def key(self) -> str:
        return step_hash(self.text)


@dataclass(frozen=True)
class Split:
    steps: list[Step]
    rule: str  # the rule asked for
    used: str  # the rule that made the cut (differs for auto, and numbered with no numbers)

    @property
    def hashes(self) -> list[str]:
        return [s.key for s in self.steps]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.steps]

    @property
    def digest(self) -> str:
        """What the editor's step fields refer to: a save whose digest differs is refused."""
        return hashlib.sha256((self.used + "\n" + "\n".join(self.hashes)).encode()).hexdigest()[:16]


def step_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _spans_from_cuts(text: str, cuts: list[int]) -> list[tuple[int, int]]:
    """Pieces between the cut offsets, stripped of surrounding whitespace; empty pieces dropped."""
    spans = []
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(text))), len(text)]
    for lo, hi in zip(bounds, bounds[1:]):
        piece = text[lo:hi]
        stripped = piece.strip()
        if stripped:
            start = lo + (len(piece) - len(piece.lstrip()))
            spans.append((start, start + len(stripped)))
    return spans


def _paragraph_cuts(text: str) -> list[int]:
    return [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]


def _line_cuts(text: str) -> list[int]:
    return [m.end() for m in _LINE_BREAK.finditer(text)]


def _numbered_cuts(text: str) -> list[int]:
    return [m.start() for m in _NUMBERED_LINE.finditer(text)]


def _sentence_cuts(text: str) -> list[int]:
    masked = _MATH.sub(lambda m: "x" * len(m.group(0)), text)  # same length: offsets stay valid
    cuts = _line_cuts(text)
    line_starts = [0, *cuts]
    for m in _SENTENCE_END.finditer(masked):
        end = m.end()
        # The word the mark ends (from the last whitespace before it): abbreviations and list markers.
        word_start = max(masked.rfind(" ", 0, end), masked.rfind("\n", 0, end), masked.rfind("\t", 0, end)) + 1
        word = masked[word_start:end]
        if word.lower() in _ABBREVIATIONS:
            continue
        line_start = line_starts[bisect_right(line_starts, end) - 1]
        if _LIST_MARKER.match(masked[line_start:end].strip()):
            continue  # "1." opening a line is a marker, not a sentence
        cuts.append(end)
    return cuts


def split_steps(text: str, rule: str = AUTO) -> Split:
    """The steps of `text` by `rule` (see the module docstring)."""
    text = text or ""
    if rule not in RULES:
        raise ValueError(f"unknown step rule {rule!r}")
    used = rule
    if rule == AUTO:
        if len(_numbered_cuts(text)) >= 2:
            used = NUMBERED
        elif len(_spans_from_cuts(text, _paragraph_cuts(text))) >= 2:
            used = PARAGRAPHS
        else:
            used = SENTENCES
    if used == NUMBERED and not _numbered_cuts(text):
        used = PARAGRAPHS
    cuts = {PARAGRAPHS: _paragraph_cuts, LINES: _line_cuts, SENTENCES: _sentence_cuts, NUMBERED: _numbered_cuts}[used](text)
    spans = _spans_from_cuts(text, cuts)
    if len(spans) > MAX_STEPS:
        spans = spans[: MAX_STEPS - 1] + [(spans[MAX_STEPS - 1][0], spans[-1][1])]
    return Split(steps=[Step(index=i, start=s, end=e, text=text[s:e]) for i, (s, e) in enumerate(spans)], rule=rule, used=used)


# --- verdicts --------------------------------------------------------------------------------------
def entries_from(split: Split, labels: dict[int, str], notes: dict[int, str]) -> list[dict]:
    """Stored form of one annotator's verdicts on `split`: [{"h", "label", "note"}] in step order."""
    return [{"h": s.key, "label": labels.get(s.index, ""), "note": notes.get(s.index, "")} for s in split.steps]


@dataclass(frozen=True)
class Mapped:
    labels: list[str]  # per current step: a label or ""
    notes: list[str]
    stale: int  # verdicts (label or note) on text that is no longer a step


def map_entries(hashes: list[str], entries: list[dict] | None) -> Mapped:
    """Stored verdicts onto the current steps (`hashes`), by step text: the k-th occurrence of a text
    takes the k-th verdict given on that text."""
    by_hash: dict[str, deque] = defaultdict(deque)
    for e in entries or []:
        by_hash[e.get("h", "")].append(e)
    labels, notes = [], []
    for h in hashes:
        queue = by_hash.get(h)
        e = queue.popleft() if queue else None
        labels.append(e.get("label", "") if e else "")
        notes.append(e.get("note", "") if e else "")
    stale = sum(1 for queue in by_hash.values() for e in queue if e.get("label") or e.get("note"))
    return Mapped(labels=labels, notes=notes, stale=stale)


def first_wrong_step(labels: list[str]) -> int | None:
    """The index of the earliest incorrect step if every step before it is labelled; -1 when every
    step is labelled and none is incorrect; None when it is not known yet (or there are no steps)."""
    for i, label in enumerate(labels):
        if label == INCORRECT:
            return i
        if label not in LABELS:
            return None
    return -1 if labels else None


def consensus(annotations: list[list[str]]) -> list[str]:
    """Per step, the label most of the annotators who labelled it gave; "" (unresolved) when no one
    labelled it or on a tie, except a tie between correct and neutral: both say "not a mistake", and
    the cautious one, neutral, is the consensus."""
    if not annotations:
        return []
    out = []
    for i in range(len(annotations[0])):
        votes = Counter(a[i] for a in annotations if a[i] in LABELS)
        top = max(votes.values(), default=0)
        tied = {label for label, n in votes.items() if n == top}
        out.append(tied.pop() if len(tied) == 1 else NEUTRAL if tied == {CORRECT, NEUTRAL} else "")
    return out


def stepwise_row(*, prompt: str, steps: list[str], labels: list[str]) -> dict | None:
    """One row of process-supervision data in TRL's stepwise-supervision layout, or None when the
    first wrong step is not known.

    `completions` are the steps up to and including the first wrong one (all of them when none is
    wrong); `labels[i]` is False for the first wrong step and True before it (a neutral step is
    not a mistake: True). `step_labels` keeps the annotators' own words for those steps.
    """
    first = first_wrong_step(labels)
    if first is None:
        return None
    n = len(steps) if first == -1 else first + 1
    return {
        "prompt": prompt, "completions": steps[:n], "labels": [labels[i] != INCORRECT for i in range(n)],
        "step_labels": labels[:n], "first_wrong_step": first,
    }
