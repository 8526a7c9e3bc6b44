"""Computed checks on an example: the same pure reward functions the trainer uses, plus a
per-word script classification for highlighting words outside the target language.

The rewards come from `training_backend` (no torch import): an example is judged exactly as a
completion `<think>{reasoning}</think><answer>{summary}</answer>` would be in GRPO.

Per-word classification (our choice, done server-side so the browser and the stored checks
agree): a "word" is a run of letters (plus digits/apostrophes). Each target language maps to the
scripts it is written in (en → Latin; zh → Han; ja → Han, Hiragana, Katakana; ...). A word is
off-language when it holds a letter of a script the target does not use. Math (`$…$`, `$$…$$`,
`\\(…\\)`) and LaTeX commands (`\\frac`) are skipped; so are one-letter Latin words in a non-Latin
target (variables such as `x`). It is a script test, not a language identifier: French words in
an English text are not flagged (the same limit as R1's language-consistency reward).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from r1lab.curation.models import assemble_completion

LATIN, HAN, HIRAGANA, KATAKANA, HANGUL, CYRILLIC, ARABIC, GREEK, HEBREW, DEVANAGARI, THAI, OTHER = (
    "Latin", "Han", "Hiragana", "Katakana", "Hangul", "Cyrillic", "Arabic", "Greek", "Hebrew", "Devanagari", "Thai", "Other",
)

LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({LATIN}) for code in (
        "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs", "tr", "vi", "id", "ro", "hu",
    )},
    "zh": frozenset({HAN}),
    "ja": frozenset({HAN, HIRAGANA, KATAKANA}),
    "ko": frozenset({HANGUL, HAN}),
    "ru": frozenset({CYRILLIC}), "uk": frozenset({CYRILLIC}), "bg": frozenset({CYRILLIC}),
    "ar": frozenset({ARABIC}), "fa": frozenset({ARABIC}),
    "el": frozenset({GREEK}), "he": frozenset({HEBREW}), "hi": frozenset({DEVANAGARI}), "th": frozenset({THAI}),
}

# (first, last, script): sorted, non-overlapping code-point ranges of the scripts we tell apart.
_RANGES = (
    (0x0041, 0x005A, LATIN), (0x0061, 0x007A, LATIN), (0x00C0, 0x024F, LATIN),
    (0x0370, 0x03FF, GREEK), (0x0400, 0x052F, CYRILLIC), (0x0590, 0x05FF, HEBREW),
    (0x0600, 0x06FF, ARABIC), (0x0900, 0x097F, DEVANAGARI), (0x0E00, 0x0E7F, THAI),
    (0x1100, 0x11FF, HANGUL), (0x1E00, 0x1EFF, LATIN), (0x3040, 0x309F, HIRAGANA), (0x30A0, 0x30FF, KATAKANA),
    (0x3400, 0x4DBF, HAN), (0x4E00, 0x9FFF, HAN), (0xAC00, 0xD7AF, HANGUL), (0xF900, 0xFAFF, HAN),
    (0xFF21, 0xFF3A, LATIN), (0xFF41, 0xFF5A, LATIN),
)

_WORD_RE = re.compile(r"[^\W\d_](?:[\w'’-]*\w)?", re.UNICODE)
_MATH_RE = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+", re.DOTALL)
_CJK = frozenset({HAN, HIRAGANA, KATAKANA})


def char_script(ch: str) -> str | None:
    cp = ord(ch)
    for lo, hi, script in _RANGES:
        if cp < lo:
            return OTHER if ch.isalpha() else None
        if cp <= hi:
            return script
    return OTHER if ch.isalpha() else None


def _word_spans(text: str):
    """Words with their spans, CJK runs split one character per word (no spaces between them)."""
    for m in _WORD_RE.finditer(text):
        word, start = m.group(0), m.start()
        scripts = [char_script(c) for c in word]
        if any(s in _CJK for s in scripts) and len(word) > 1:
            # Split into runs: each CJK char alone, non-CJK runs kept together.
            i = 0
            while i < len(word):
                if scripts[i] in _CJK:
                    yield start + i, start + i + 1, word[i], {scripts[i]}
                    i += 1
                    continue
                j = i
                while j < len(word) and scripts[j] not in _CJK:
                    j += 1
                yield start + i, start + j, word[i:j], {s for s in scripts[i:j] if s}
                i = j
        else:
            yield start, m.end(), word, {s for s in scripts if s}


def off_language_words(text: str, target_lang: str) -> list[dict]:
    """Words in `text` written in a script the target language does not use: [{start, end, word, script}]."""
    allowed = LANGUAGE_SCRIPTS.get((target_lang or "").split("-")[0].lower())
    if allowed is None:
        return []  # a language we have no script table for: flag nothing rather than everything
    masked = _mask_math(text)
    out = []
    for start, end, word, scripts in _word_spans(masked):
        foreign = scripts - allowed
        if not foreign:
            continue
        if foreign == {LATIN} and LATIN not in allowed and len(word) == 1:
            continue  # a variable name, "x", in a non-Latin text
        out.append({"start": start, "end": end, "word": text[start:end], "script": sorted(foreign)[0]})
    return out


def _mask_math(text: str) -> str:
    """`text` with math and LaTeX commands replaced by spaces (same length, so spans stay valid)."""
    return _MATH_RE.sub(lambda m: " " * len(m.group(0)), text)


@dataclass(frozen=True)
class Checks:
    format_score: float
    accuracy: float | None
    language_score: float
    length: int
    reflection_count: int

    def as_fields(self) -> dict:
        return {
            "format_score": self.format_score, "accuracy": self.accuracy, "language_score": self.language_score,
            "length": self.length, "reflection_count": self.reflection_count,
        }


def compute_checks(*, reasoning: str, summary: str, gold_answer: str, language: str) -> Checks:
    """The stored checks of an example, from training_backend's reward functions."""
    from training_backend.reflection import count_reflections
    from training_backend.rewards import accuracy_reward, format_reward, language_consistency_reward

    completion = assemble_completion(reasoning, summary)
    return Checks(
        format_score=float(format_reward(completion)),
        accuracy=float(accuracy_reward(completion, gold_answer)) if gold_answer.strip() else None,
        language_score=float(language_consistency_reward(completion, language)),
        length=len(completion),
        reflection_count=int(count_reflections(reasoning)),
    )


def compute_checks_batch(rows: list[dict]) -> list[Checks]:
    """`compute_checks` for many rows at once (the import), the same figures row for row.

    Each reward goes through its batch form; the accuracy reward's batch form
    (`REWARD_FUNCS["accuracy"]`) dedupes (gold, answer) pairs, answers the easy ones without sympy
    and hands the rest to its sympy worker pool in parallel, instead of one round-trip per row.
    `rows`: dicts with reasoning, summary, gold_answer, language.
    """
    from training_backend.reflection import count_reflections
    from training_backend.rewards import REWARD_FUNCS, format_reward, language_consistency_reward

    if not rows:
        return []
    completions = [assemble_completion(r["reasoning"], r["summary"]) for r in rows]
    golds = [r["gold_answer"] if r["gold_answer"].strip() else None for r in rows]
    accuracies = REWARD_FUNCS["accuracy"](completions, gold=golds)
    return [
        Checks(
            format_score=float(format_reward(c)),
            accuracy=None if acc is None else float(acc),
            language_score=float(language_consistency_reward(c, r["language"])),
            length=len(c),
            reflection_count=int(count_reflections(r["reasoning"])),
        )
        for r, c, acc in zip(rows, completions, accuracies, strict=True)
    ]


def live_checks(*, reasoning: str, summary: str, gold_answer: str, language: str) -> dict:
    """What the editor shows while the annotator types: checks + reflection and off-language spans."""
    from training_backend.reflection import find_reflections

    checks = compute_checks(reasoning=reasoning, summary=summary, gold_answer=gold_answer, language=language)
    return {
        **checks.as_fields(),
        "reflections": [{"start": s, "end": e, "word": w} for s, e, w in find_reflections(reasoning)],
        "off_language": {
            "reasoning": off_language_words(reasoning, language),
            "summary": off_language_words(summary, language),
        },
    }
