"""The sympy side of the accuracy reward, run as a child process (see math_pool.py).

Protocol, one line each way: the parent writes `["gold", "answer"]` (JSON) and reads `1` or `0`;
`"clear"` empties the parse caches (with sympy's own memo and the start-state memo below) and
answers `ok`; `"warm"` finishes the warm-up (below) and answers `ok`. The first line written is
`ready`, once math-verify is imported. This file is run by path with `python -P` (no script dir
on sys.path), so it imports nothing from training_backend; it must stay standalone.

Three things make a parse here cheaper than math-verify's own, with the same result:

- two-stage ANTLR parsing. latex2sympy's generated parser runs ANTLR's full LL(*) prediction,
  which re-does its context-sensitive lookahead on every parse (ANTLR caches only SLL decisions).
  We first parse in SLL mode; the ANTLR runtime guarantees that an SLL parse either returns the
  very tree LL would, or reports a syntax error (`antlr4/atn/PredictionMode.py`). latex2sympy's
  error listener raises on any report, and on that we parse again in LL mode, exactly as
  latex2sympy would have. About 3x less time per LaTeX string; nothing about the grammar, the
  tree or the conversion to sympy changes. `install_two_stage_parsing` returns an undo, so the
  tests can compare both modes in one process.
- a memo of the start states of full-context predictions (`install_full_context_start_memo`):
  the LL parse's most repeated work, a function of the rule invocation stack, not of the input.
- a warm-up: ANTLR builds its prediction DFA lazily and sympy fills its own caches, so the first
  few dozen parses in a process cost several times the later ones. `WARM_UP` (generic answer
  shapes, none taken from any test or benchmark set) is parsed and compared one item at a time
  whenever no request is waiting, so a fresh worker answers at once and is warm a few seconds
  later; `"warm"` (the parent's `warm_up()`) waits for the rest.

And two things make a comparison cheaper, with the same verdict:

- math-verify's last resort for two expressions is `simplify(a - b).is_zero`, which on a nonzero
  difference tries a dozen rewrites before it says no; `install_nonzero_shortcut` answers False
  at once when a - b is shown nonzero at a point (exactly, or at two precisions), which no
  simplification can turn into zero. Checked against plain `verify` on every peer case and
  ~6,000 cross pairs of them (0 differences).
- its last resort for two equations is to `solve` both; `install_proportional_equations_shortcut`
  answers True at once for two polynomial equations in the same 2-3 symbols whose sides differ by
  a rational factor (the same solution set), where solve would have found the same solutions.
"""

import json
import logging
import os
import resource
import select
import sys
from functools import lru_cache

# sympy can build expressions that eat all memory (2^(10^10)); a capped address space turns
# that into a MemoryError (a 0 verdict) instead of the OOM killer picking a process at random.
_MEMORY_LIMIT_BYTES = 4 << 30

# Answer shapes a math-reasoning model writes; parsed once at start so the parser's DFA is built.
WARM_UP = [
    "$\\frac{1}{2}$", "$-\\frac{3}{4}$", "$\\dfrac{\\sqrt{3}}{2}$", "$2\\sqrt{3}$", "$\\sqrt[3]{2}$",
    "$3\\pi$", "$\\frac{\\pi}{6}$", "$x^2+2x+1$", "$(x+1)^2$", "$x = 3$", "$y=-\\frac{1}{2}x+\\frac{3}{4}$",
    "$2x+4y-3=0$", "$a_1 = 2, a_{10} = 29$", "$(1, 2)$", "$(a,b)=(3,2)$", "$[0, 1)$",
    "$(-\\infty, 3]\\cup(5,\\infty)$", "$\\{1, 2, 3\\}$", "${1,3}$", "$x \\in (-6, 10)$",
    "$\\left(\\frac{4}{5},\\frac{1}{5}\\right)$", "$\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}$",
    "$6 \\text{ and } 8$", "$10^\\circ$", "$45\\%$", "$\\$12.50$", "$3 \\text{ cm}^2$", "$\\sin x \\cos y$",
    "$\\tan^{-1}(2)$", "$\\log_2 8$", "$\\ln 2$", "$e^{i\\pi}$", "$f(x) = x^2$", "$x \\le 5$", "$0 < x < 1$",
    "$\\binom{5}{2}$", "$5!$", "$\\overline{AB}$", "$\\vec{v}$", "$1,2,3$", "$x=1 \\text{ or } x=2$",
    "$\\infty$", "$\\emptyset$", "$a+b\\sqrt{c}$", "$\\frac{a}{b}+\\frac{c}{d}$", "$\\mathbb{R}$",
    "$\\boxed{(1, 2, 3), (3, 2, 1)}$", "$\\angle ABC = 30^{\\circ}$", "$|x-1|$", "$\\lfloor x \\rfloor$",
    "$\\sum_{i=1}^{n} i$", "$\\int_0^1 x\\,dx$", "$\\lim_{x \\to 0} \\frac{\\sin x}{x}$", "$p \\cdot q$",
    "$12 \\times 3$", "$\\frac{n(n+1)}{2}$", "$2^{10}$", "$1.5 \\times 10^{3}$", "$\\pm 2$", "$x \\neq 0$",
    "The answer is $\\boxed{42}$.", "So \\[ x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a} \\]",
]


def install_two_stage_parsing():
    """Make latex2sympy parse SLL first, LL on a reported error; returns a function that undoes it.

    A no-op (returning a no-op) where latex2sympy's internals are not the ones this was written
    for: then parsing is only slower, never different.
    """
    try:
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    except ImportError:
        return lambda: None
    original = getattr(_Latex2Sympy, "create_parser", None)
    if original is None or getattr(original, "two_stage", False):
        return lambda: None

    def create_parser(self, latex_str):
        parser = original(self, latex_str)
        interp = getattr(parser, "_interp", None)
        sll_math = getattr(parser, "math", None)
        if interp is None or sll_math is None:
            return parser
        interp.predictionMode = PredictionMode.SLL

        def math():
            try:
                return sll_math()
            except Exception:  # the error listener raises a bare Exception on any syntax report
                return original(self, latex_str).math()  # LL, as latex2sympy itself parses

        parser.math = math
        return parser

    create_parser.two_stage = True
    _Latex2Sympy.create_parser = create_parser
    return lambda: setattr(_Latex2Sympy, "create_parser", original)


_START_STATES_REMEMBERED = 4096


def install_full_context_start_memo():
    """Remember the start states of latex2sympy's full-context (LL) predictions; returns
    `(clear, undo)`.

    A string that SLL cannot parse (any `x^2` or `a_3`) is parsed again in LL mode, where each
    context-sensitive decision first builds a full-context start state: the closure of the
    decision's ATN state through the whole rule invocation stack (~0.3-1 ms each, about a third
    of an LL parse's prediction time). ANTLR does not keep these. The closure is a function of
    the decision's ATN state, the invoking states of the stack (from which ANTLR builds its
    prediction context) and the parser's current precedence (this grammar's only predicates are
    `precpred` on it); it reads no input. So it is kept under that key and handed back as is:
    the prediction that follows only reads it. Answers repeat these stacks (every power in a
    relation in a list...): ~70% of them are found here within one pass over fresh strings.
    `tests/training_backend/test_rewards_accuracy.py` checks every peer string parses to the
    same tree with and without it.
    """
    try:
        from antlr4.atn.ParserATNSimulator import ParserATNSimulator
    except ImportError:
        return (lambda: None), (lambda: None)
    original = ParserATNSimulator.computeStartState
    if getattr(original, "start_memo", False):
        return (lambda: None), (lambda: None)
    memo: dict = {}

    def computeStartState(self, p, ctx, fullCtx):
        if not fullCtx:  # SLL start states are kept in ANTLR's DFA already
            return original(self, p, ctx, fullCtx)
        stack, outer = [], ctx
        while outer is not None and not outer.isEmpty():
            stack.append(outer.invokingState)
            outer = outer.parentCtx
        key = (p.stateNumber, tuple(stack), self.parser._precedenceStack[-1])
        configs = memo.get(key)
        if configs is None:
            configs = original(self, p, ctx, fullCtx)
            if len(memo) >= _START_STATES_REMEMBERED:
                memo.clear()
            memo[key] = configs
        return configs

    computeStartState.start_memo = True
    ParserATNSimulator.computeStartState = computeStartState
    return memo.clear, lambda: setattr(ParserATNSimulator, "computeStartState", original)


@lru_cache(maxsize=1)
def _elementary_types() -> tuple:
    import sympy
    from sympy.core.numbers import ImaginaryUnit

    return (
        sympy.Symbol, sympy.Rational, sympy.Add, sympy.Mul, sympy.Pow, sympy.NumberSymbol,
        ImaginaryUnit, sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.cot,
        sympy.sec, sympy.csc, sympy.asin, sympy.acos, sympy.atan, sympy.Abs,
    )  # fmt: skip


# Generic points: distinct primes over distinct primes, so that no term of a typical answer
# cancels by accident; small primes for integer symbols.
_RATIONAL_POINT = ((13, 11), (17, 7), (29, 23), (41, 37), (53, 47))
_INTEGER_POINT = (7, 11, 13, 17, 19)


def surely_nonzero(a, b) -> bool:
    """True only when a - b is shown not to be identically zero (see `install_nonzero_shortcut`):
    both are scalar expressions built from rationals, symbols, pi, e, i, +, *, powers and
    elementary functions, and a - b at a point meeting every symbol's assumptions is exactly a
    nonzero rational, or evaluates to the same real far from 0 at 30 and at 50 digits."""
    import sympy

    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return False
    if isinstance(a, sympy.MatrixExpr) or isinstance(b, sympy.MatrixExpr):
        return False
    diff = a - b
    elementary = _elementary_types()
    if not all(isinstance(node, elementary) for node in sympy.preorder_traversal(diff)):
        return False  # floats, unknown functions, integrals, limits, sets...: simplify's call
    symbols = sorted(diff.free_symbols, key=str)
    if len(symbols) > len(_RATIONAL_POINT):
        return False
    point = {}
    for symbol, (p, q), n in zip(symbols, _RATIONAL_POINT, _INTEGER_POINT):
        value = sympy.Integer(n) if symbol.is_integer else sympy.Rational(p, q)
        if any(getattr(value, f"is_{key}") != held for key, held in symbol.assumptions0.items()):
            return False
        point[symbol] = value
    at = diff.xreplace(point)
    if at.is_Rational:
        return at != 0
    low, high = at.evalf(30), at.evalf(50)
    if not (isinstance(low, sympy.Float) and isinstance(high, sympy.Float)):
        return False  # complex, undefined (nan, zoo) or not a number
    return bool(abs(low) > 1e-12 and abs(low - high) <= abs(low) * sympy.Rational(1, 10**20))


def install_nonzero_shortcut():
    """Let math-verify's `sympy_symbolic_eq(a, b)` answer False without `simplify` when a - b is
    shown not to be identically zero; returns a function that undoes it.

    The original returns `simplify(a - b).is_zero` (False on any exception). simplify returns an
    expression equal to its argument wherever that is defined, so if a - b is defined and nonzero
    at one point that meets every symbol's assumptions, no simplification of it is zero, and the
    original returns False too (or raises, or runs past the deadline: a 0 verdict as well).
    `surely_nonzero` checks the point exactly when substituting rationals leaves a rational, else
    by evaluating at 30 and 50 digits (sympy's evalf works to the requested accuracy, so a true
    zero does not come out as two agreeing values far from 0); anything else goes the original
    way. This is where false verdicts spent most of their sympy time: simplify tries a dozen
    rewrites before it gives up on a nonzero difference (~5-30 ms each on a cold sympy cache).
    """
    return _install_grader_shortcut("sympy_symbolic_eq", surely_nonzero, False)


def _install_grader_shortcut(name: str, decides, verdict: bool):
    """Wrap math-verify's `grader.<name>(a, b, ...)` so that it returns `verdict` at once when
    `decides(a, b)`, and otherwise (or when `decides` raises) calls the original; returns a
    function that undoes it. A no-op where math-verify lacks that function or it is wrapped."""
    try:
        from math_verify import grader
    except ImportError:
        return lambda: None
    original = getattr(grader, name, None)
    if original is None or getattr(original, "shortcut", False):
        return lambda: None

    def shortcut(a, b, *args, **kwargs):
        try:
            if decides(a, b):
                return verdict
        except Exception:  # an optimisation only: anything odd goes the original way
            pass
        return original(a, b, *args, **kwargs)

    shortcut.shortcut = True
    setattr(grader, name, shortcut)
    return lambda: setattr(grader, name, original)


# Equations whose two sides differ by a polynomial of at most this degree in at most this many
# symbols are compared by proportionality (see `install_proportional_equations_shortcut`).
_PROPORTIONAL_MAX_DEGREE = 4
_PROPORTIONAL_MAX_SYMBOLS = 3


def proportional_equations(gold, pred) -> bool:
    """True only when gold and pred are both equations `lhs = rhs` whose differences lhs - rhs are
    polynomials with rational coefficients in the same symbols (2 or 3 of them, total degree 1 to 4),
    one a nonzero rational multiple of the other: `x^2/4 + y^2/3 = 1` and `x^2/16 + y^2/12 = 1/4`,
    `2x + 4y - 3 = 0` and `y = -x/2 + 3/4`. Such equations have the same solution set."""
    import sympy

    if not (isinstance(gold, sympy.Eq) and isinstance(pred, sympy.Eq)):
        return False
    g, p = gold.lhs - gold.rhs, pred.lhs - pred.rhs
    if not (isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr)) or g.has(sympy.Float) or p.has(sympy.Float):
        return False
    symbols = g.free_symbols
    if not 2 <= len(symbols) <= _PROPORTIONAL_MAX_SYMBOLS:
        return False
    if not symbols == p.free_symbols == gold.free_symbols == pred.free_symbols:
        return False  # math-verify solves for the equation's symbols: none may cancel out
    gens = sorted(symbols, key=str)
    try:
        pg = sympy.Poly(g, *gens, domain="QQ")
        pp = sympy.Poly(p, *gens, domain="QQ")
    except (sympy.PolynomialError, sympy.CoercionFailed, sympy.GeneratorsNeeded):
        return False  # not a polynomial in its symbols over the rationals (sqrt(2) x, sin x, 1/x)
    if not 1 <= pg.total_degree() <= _PROPORTIONAL_MAX_DEGREE or pg.total_degree() != pp.total_degree():
        return False
    ratio = pp.LC() / pg.LC()
    return ratio != 0 and pp == pg.mul_ground(ratio)


def install_proportional_equations_shortcut():
    """Let math-verify's `sympy_solve_and_compare(gold, pred, ...)` answer True without `solve`
    when `proportional_equations(gold, pred)`; returns a function that undoes it.

    math-verify's last resort for two equations is to `solve` each for its free symbols and
    compare the solutions (~50 ms a side with sympy's cache cold: solve checks every solution by
    substituting it back). For two proportional polynomial equations in the same symbols the
    solution sets are the same set, and `solve` finds them as the same expressions up to form
    (it solves the numerator; a rational factor changes neither the roots nor which symbol it
    solves for), which math-verify's comparison then equates. Checked against plain `verify` on
    the peer cases and a generated family of proportional and non-proportional lines, planes,
    conics, parabolas and polynomial equations up to degree 4 in 1-3 symbols
    (tests/training_backend/test_rewards_accuracy.py): the same verdicts. Anything else goes
    the original way.
    """
    return _install_grader_shortcut("sympy_solve_and_compare", proportional_equations, True)


def main() -> None:
    # Results go on a private duplicate of stdout; anything a library prints lands on stderr,
    # which the parent discards, so stray output can never be read as a verdict.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT_BYTES, _MEMORY_LIMIT_BYTES))
    except (ValueError, OSError):  # a lower hard limit already set by the host: keep it
        pass

    import math_verify
    from math_verify import parser as mv_parser
    from sympy.core.cache import clear_cache as clear_sympy_cache

    # math-verify warns once that its own timeout is off; the parent bounds time by killing us.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    install_two_stage_parsing()
    install_nonzero_shortcut()
    install_proportional_equations_shortcut()
    clear_start_states, _ = install_full_context_start_memo()

    @lru_cache(maxsize=8192)
    def parse(text: str) -> list:
        # G completions of a prompt share the gold and often the answer: parse each string once.
        return math_verify.parse(text, parsing_timeout=None)

    def clear() -> None:
        parse.cache_clear()
        mv_parser.parse_latex_cached.cache_clear()
        mv_parser.parse_expr_cached.cache_clear()
        clear_sympy_cache()
        clear_start_states()  # parser machinery like ANTLR's DFA, but learnt from these strings

    warm_up = iter(WARM_UP)
    previous: list = []

    def warm_one() -> bool:
        """One warm-up step; False when there are none left."""
        nonlocal previous
        text = next(warm_up, None)
        if text is None:
            return False
        try:  # an optimisation: a library that dislikes one shape is no reason to stop
            parsed = math_verify.parse(text, parsing_timeout=None)
            math_verify.verify(previous, parsed, timeout_seconds=None)
            previous = parsed
        except Exception:
            pass
        return True

    stdin = sys.stdin.fileno()
    poller = select.poll()
    poller.register(stdin, select.POLLIN | select.POLLHUP)
    buf = b""
    out.write(b"ready\n")
    while True:
        while b"\n" not in buf:
            while not poller.poll(0) and warm_one():  # idle: warm up while nobody waits
                pass
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            buf += chunk
        line, _, buf = buf.partition(b"\n")
        line = line.strip()
        if line == b'"clear"':
            clear()
            out.write(b"ok\n")
            continue
        if line == b'"warm"':
            while warm_one():
                pass
            out.write(b"ok\n")
            continue
        try:
            gold, answer = json.loads(line)
            ok = math_verify.verify(parse(gold), parse(answer), timeout_seconds=None)
        except Exception:  # last resort: sympy raises anything on odd input; a crash is a 0 verdict
            ok = False
        out.write(b"1\n" if ok else b"0\n")


if __name__ == "__main__":
    main()
