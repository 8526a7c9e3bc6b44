"""The sympy side of the accuracy reward, run as a child process (see accuracy.py).

Protocol, one line each way: the parent writes `["gold", "answer"]` (JSON) and reads `1` or `0`;
`"clear"` empties the parse caches and answers `ok`. The first line written is `ready`, once
math-verify is imported. This file is run by path with `python -P` (no script dir on sys.path),
so it imports nothing from training_backend; it must stay standalone.
"""

import json
import logging
import os
import resource
import sys
from functools import lru_cache

# sympy can build expressions that eat all memory (2^(10^10)); a capped address space turns
# that into a MemoryError (a 0 verdict) instead of the OOM killer picking a process at random.
_MEMORY_LIMIT_BYTES = 4 << 30


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

    # math-verify warns once that its own timeout is off; the parent bounds time by killing us.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    @lru_cache(maxsize=8192)
    def parse(text: str) -> list:
        # G completions of a prompt share the gold and often the answer: parse each string once.
        return math_verify.parse(text, parsing_timeout=None)

    out.write(b"ready\n")
    for line in sys.stdin.buffer:
        if line.strip() == b'"clear"':
            parse.cache_clear()
            mv_parser.parse_latex_cached.cache_clear()
            mv_parser.parse_expr_cached.cache_clear()
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
