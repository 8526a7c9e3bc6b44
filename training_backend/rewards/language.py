"""Language-consistency reward (DeepSeek-R1 §2.3.2): the share of the CoT's words that are in
the target language.

What counts as a word, decided here because the paper does not say:
- the text scored is the `<think>` span (the whole completion when there is none);
- math is neutral: `$…$`, `\\(…\\)`, `\\[…\\]` spans, LaTeX commands (`\\frac`), digits, symbols
  and single Latin letters (variables: `x`, `n`) count for no language;
- a CJK ideograph is one word (Chinese has no spaces; R1's zh CoTs are scored per character),
  as is each kana or hangul character;
- a run of Latin letters (accents and apostrophes included) is one word; so is a run of letters
  of any other script (Cyrillic, Greek, Arabic, …).
Target `en` counts Latin-script words, `zh` counts CJK ideographs; everything else that is a
word counts against. A CoT with no word at all (pure arithmetic) scores 1.0: it mixes nothing,
and rewarding it no more than a short English CoT gives no incentive to write less.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training_backend.rewards.parsing import as_text, extract_think

_MATH = re.compile(r"\$\$.*?\$\$|(?<!\\)\$.*?(?<!\\)\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+", re.DOTALL)
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_KANA_HANGUL = "\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff"
_LATIN = "A-Za-z\u00c0-\u024f"
_WORD = re.compile(
    rf"(?P<cjk>[{_CJK}])"
    rf"|(?P<kana>[{_KANA_HANGUL}])"
    rf"|(?P<latin>[{_LATIN}]+(?:'[{_LATIN}]+)*)"
    # Any other letters: \w minus digits, underscore and the scripts above.
    rf"|(?P<other>(?:(?![{_LATIN}{_CJK}{_KANA_HANGUL}])[^\W\d_])+)"
)
LANGUAGES = {"en": "latin", "zh": "cjk"}


def language_consistency_reward(completion: str, target_lang: str) -> float:
    """Fraction of the CoT's words in `target_lang` (`en` or `zh`); see the module docstring.

    Raises ValueError for an unsupported target language (a config error, not model output).
    """
    try:
        target = LANGUAGES[target_lang]
    except KeyError:
        raise ValueError(f"unsupported target_lang {target_lang!r}; supported: {', '.join(LANGUAGES)}") from None
    think = extract_think(completion)
    text = _MATH.sub(" ", as_text(completion) if think is None else think)
    in_target = total = 0
    for m in _WORD.finditer(text):
        kind = m.lastgroup
        if kind == "latin" and len(m.group()) == 1:
            continue  # a lone letter is a variable, not English
        total += 1
        in_target += kind == target
    return 1.0 if total == 0 else in_target / total


def language_consistency_rewards(
    completions: Sequence[object], *, target_lang: str | Sequence[str | None] | None = None, **_columns: object
) -> list[float | None]:
    """Batch form. Reads `target_lang`: one code for all rows, or a column of codes; None where
    a row's code is None (the reward does not apply) and for every row when it is absent."""
    if target_lang is None:
        return [None] * len(completions)
    langs = [target_lang] * len(completions) if isinstance(target_lang, str) else list(target_lang)
    if len(langs) != len(completions):
        raise ValueError(f"{len(langs)} target_lang values for {len(completions)} completions")
    return [None if lang is None else language_consistency_reward(c, lang) for c, lang in zip(completions, langs)]
