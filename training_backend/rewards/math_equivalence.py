"""When is a model's answer the gold, mathematically: the rules the accuracy reward applies before
(and instead of) math-verify's sympy comparison. Pure: no processes, no threads, no state; sympy
is imported only by `close_numbers_verdict`, on its first close pair.

1. preparation (`prepare`): a string with no math delimiter is wrapped as `$…$` before parsing,
   because math-verify only reads LaTeX inside delimiters (bare `\\sqrt{2}` parses to nothing,
   bare `1+x` to `1`); purely numeric strings (`1 000`, `1,5`) stay bare so that its
   number-format rules still apply. The same goes for the gold. (Plain math-verify on the raw
   strings is the benchmark's second baseline; see benchmarks/rewards.py for where the two
   differ.)
2. a fast path for the common case, plain numbers (integers, decimals, `a/b`, `\\frac{a}{b}`,
   optionally `x = …`, `$…$` or `\\boxed{}`-wrapped): exact rational comparison, with
   math-verify's 6-decimal rounding rule for decimals (`fast_verdict`; numbers less than 2e-6
   apart, `22/7` vs `3.142857`, get that rule from sympy itself, `close_numbers_verdict`);
   anything it is not sure of goes on to math-verify. Identical prepared strings are equal
   without parsing.

The comparisons math-verify itself makes cheaper (SLL-first parsing, the nonzero and
proportional-equations shortcuts) run inside its worker process: `_math_worker.py`.
"""

from __future__ import annotations

import re
from fractions import Fraction

# --- preparation -------------------------------------------------------------------------

# An unescaped `$`, `\(`, `\[`, `\boxed`, or an environment: math-verify finds LaTeX by these.
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox|\\begin\{")
_NUMERIC_ONLY = re.compile(r"[+-]?[\d\s.,]*\d[\d\s.,]*%?")


def prepare(text: str) -> str:
    """The string handed to math-verify's `parse` (see point 1 of the module docstring)."""
    text = text.strip()
    if not text or _DELIMITED.search(text) or _NUMERIC_ONLY.fullmatch(text):
        return text
    return f"${text}$"


# --- fast path -----------------------------------------------------------------------------

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# `x = 3`: math-verify unwraps an assignment to its right-hand side when only one side has one.
# e and i are not variables to latex2sympy (Euler's number, the imaginary unit): left to sympy.
_VAR_PREFIX = re.compile(r"([a-dA-Df-hF-Hj-zJ-Z])\s*=\s*(.+)", re.DOTALL)
_INT = re.compile(r"-?\d{1,300}")
_DECIMAL = re.compile(r"-?\d{0,300}\.\d{1,300}")
_SLASH_FRACTION = re.compile(r"(-?\d{1,300})\s*/\s*(\d{1,300})")
_TEX_FRACTION = re.compile(r"(-?)\\[dt]?frac\{\s*(-?\d{1,300})\s*\}\{\s*(\d{1,300})\s*\}")
# Two numbers that round to the same 6 decimals (math-verify's float rule) differ by < 1e-6;
# further apart than this they surely differ, closer they go to sympy for the exact rule.
_FLOAT_CLEARLY_DIFFERENT = Fraction(2, 10**6)
_FLOAT_DIGITS = 15  # math-verify parses decimals as 15-digit sympy Floats
_HAS_ALNUM = re.compile(r"[0-9A-Za-z]")
# Every character the four number patterns below can match (digits, sign, point, slash,
# whitespace, `\\frac`/`\\dfrac`/`\\tfrac` and braces).
_PLAIN_NUMBER_CHARS = re.compile(r"[-\d./\s\\dtfrac{}]*")


def _unwrap(text: str) -> str:
    """Strip whole-string `$…$`, `\\(…\\)`, `\\[…\\]`, `\\boxed{…}` wrappers and a final period."""
    while True:
        text = text.strip()
        before = text
        for left, right in _WRAPPERS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
                break
        if text.startswith("\\boxed{") and text.endswith("}") and _box_closes_at_end(text):
            text = text[len("\\boxed{") : -1]
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1]
        if text == before:
            return text


def _box_closes_at_end(text: str) -> bool:
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def _as_number(text: str) -> tuple[str | None, Fraction, bool, int] | None:
    """(variable or None, value, is_decimal, digit count) for a plain number; None otherwise."""
    text = _unwrap(text)
    var = None
    m = _VAR_PREFIX.fullmatch(text)
    if m:
        var, text = m.group(1), _unwrap(m.group(2))
    if not _PLAIN_NUMBER_CHARS.fullmatch(text):
        return None  # a cheap test first: prose would otherwise be scanned digit by digit below
    digits = sum(c.isdigit() for c in text)
    if _INT.fullmatch(text):
        return var, Fraction(int(text)), False, digits
    if _DECIMAL.fullmatch(text):
        return var, Fraction(text), True, digits
    m = _SLASH_FRACTION.fullmatch(text)
    if m and int(m.group(2)) != 0:
        return var, Fraction(int(m.group(1)), int(m.group(2))), False, digits
    m = _TEX_FRACTION.fullmatch(text)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return var, -value if m.group(1) else value, False, digits
    return None


def fast_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict when it is certain without sympy; None when sympy must decide."""
    if gold == answer and _HAS_ALNUM.search(gold):
        return True
    g = _as_number(gold)
    if g is None:
        return None
    a = _as_number(answer)
    if a is None:
        return None
    g_var, g_val, g_dec, g_digits = g
    a_var, a_val, a_dec, a_digits = a
    if g_var and a_var and g_var != a_var:
        return None  # `x = 3` vs `y = 3`: strict relational comparison, sympy's call
    if not (g_dec or a_dec):
        return g_val == a_val  # exact rationals on both sides: sympy compares exactly too
    if max(g_digits, a_digits) > _FLOAT_DIGITS:
        return None  # beyond a Float's precision sympy's rounding decides
    if g_val == a_val:
        return True
    if abs(g_val - a_val) > _FLOAT_CLEARLY_DIFFERENT:
        return False
    return None


def close_numbers(gold: str, answer: str) -> tuple[Fraction, bool, Fraction, bool] | None:
    """(gold value, is decimal, answer value, is decimal) for what `close_numbers_verdict` decides."""
    g_num, a_num = _as_number(gold), _as_number(answer)
    if g_num is None or a_num is None:
        return None
    (g_var, g_val, g_dec, g_digits), (a_var, a_val, a_dec, a_digits) = g_num, a_num
    if g_var or a_var:
        return None  # an assignment on one side or both: math-verify compares relations there
    if not (g_dec or a_dec) or max(g_digits, a_digits) > _FLOAT_DIGITS or g_val == a_val:
        return None
    if abs(g_val - a_val) > _FLOAT_CLEARLY_DIFFERENT:
        return None
    return g_val, g_dec, a_val, a_dec


def close_numbers_verdict(gold: str, answer: str) -> bool | None:
    """math-verify's verdict on two different plain numbers less than 2e-6 apart, at least one
    a decimal of at most 15 digits (what `fast_verdict` leaves to sympy); None for anything else.
    sympy's own objects and rule, without parsing or a worker; called once per distinct pair
    (after the verdict cache), as it imports sympy and costs ~1 ms.

    math-verify parses a decimal to `Float(text)` (15 digits), `\\frac{a}{b}` to `Rational`, `a/b`
    to an unevaluated product it evaluates before comparing numbers, an integer to `Integer`.
    `verify` then says equal when the two are ==, or round to the same 6 decimals (its float
    rule), or their difference is zero; its string comparison of the two extractions cannot
    match, as they spell different values. Tested against math-verify itself on every form of
    close pairs (tests/training_backend/test_rewards_accuracy.py). sympy's arithmetic on two
    short numbers is bounded, so this runs in the caller's process (in accuracy's `_verdicts`, while
    the workers parse the rest); sympy is imported on the first close pair only.
    """
    close = close_numbers(gold, answer)
    if close is None:
        return None
    g_val, g_dec, a_val, a_dec = close

    from sympy import Float, Integer, Rational

    def number(value: Fraction, is_decimal: bool):
        if is_decimal:  # a decimal's value is exact in base 10: print it back as the text parsed
            return Float(_decimal_text(value), 15)
        if value.denominator == 1:
            return Integer(value.numerator)
        return Rational(value.numerator, value.denominator)

    g, a = number(g_val, g_dec), number(a_val, a_dec)
    if g == a:
        return True
    try:
        if g.round(6) == a.round(6):
            return True
    except (TypeError, ValueError, ArithmeticError):
        pass
    return bool((g - a).is_zero)


def _decimal_text(value: Fraction) -> str:
    """The exact decimal expansion of a Fraction whose denominator divides a power of ten."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    digits = str((value * 10**places).numerator).rjust(places + 1, "0")
    return f"{sign}{digits[: len(digits) - places]}.{digits[len(digits) - places :] or '0'}"

