"""Hand-written few-row datasets in the public formats' own columns (no downloads), and `encode`,
which writes rows as each kind of upload: JSONL, CSV, Parquet (pyarrow), or a `datasets`
save_to_disk folder in a .zip / .tar.gz (written here, in the test).

The column names and value shapes follow the datasets as published on the Hugging Face hub; the
problems are made up (small enough to check by hand).
"""
from __future__ import annotations

import csv
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

# GSM8K (openai/gsm8k, "main"): the worked solution has calculator annotations and ends in `#### n`.
GSM8K = [
    {"question": "Ana picks 48 apples on Monday and half as many on Tuesday. How many apples does she pick in all?",
     "answer": "On Tuesday she picks 48/2 = <<48/2=24>>24 apples.\nIn all she picks 48+24 = <<48+24=72>>72 apples.\n#### 72"},
    {"question": "A pen costs $3 and a notebook costs $5. How much do 4 pens and 2 notebooks cost?",
     "answer": "4 pens cost 4*3 = <<4*3=12>>12 dollars.\n2 notebooks cost 2*5 = <<2*5=10>>10 dollars.\nTogether: 12+10 = <<12+10=22>>22.\n#### 22"},
    {"question": "Tom reads 15 pages a day. How many pages does he read in 2 weeks?",
     "answer": "Two weeks are 2*7 = <<2*7=14>>14 days.\nHe reads 15*14 = <<15*14=210>>210 pages.\n#### 210"},
]

# MATH (hendrycks competition_math): no answer column; the answer is the solution's last box,
# which may hold nested braces, and `type` is the subject (not r1lab's row type).
MATH = [
    {"problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "We add: $\\frac{1}{4} + \\frac{1}{4} = \\frac{2}{4} = \\boxed{\\frac{1}{2}}$."},
    {"problem": "Solve for $x$: $2x + 3 = 11$.", "level": "Level 2", "type": "Algebra",
     "solution": "Subtract 3: $2x = 8$, so $x = \\boxed{4}$."},
    {"problem": "Simplify $\\sqrt{50}$.", "level": "Level 2", "type": "Algebra",
     "solution": "First guess $\\boxed{50}$? No: $\\sqrt{50} = \\sqrt{25 \\cdot 2} = \\fbox{5\\sqrt{2}}$."},
]

# MATH-500 (HuggingFaceH4/MATH-500): an `answer` column beside the solution, `subject`, an int level.
MATH500 = [
    {"problem": "Compute $3 \\cdot 7$.", "solution": "$3 \\cdot 7 = \\boxed{21}$.", "answer": "21",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "What is the largest prime factor of 91?", "solution": "$91 = 7 \\cdot 13$, so the answer is $\\boxed{13}$.",
     "answer": "13", "subject": "Number Theory", "level": 2, "unique_id": "test/number_theory/2.json"},
]

# DeepScaleR (agentica-org/DeepScaleR-Preview-Dataset): problem, answer, solution.
DEEPSCALER = [
    {"problem": "Find the sum of the first 10 positive integers.", "answer": "55",
     "solution": "The sum is $\\frac{10 \\cdot 11}{2} = 55$."},
    {"problem": "How many diagonals does a hexagon have?", "answer": "9",
     "solution": "A hexagon has $\\frac{6 \\cdot 3}{2} = 9$ diagonals."},
]

# NuminaMath-CoT (AI-MO/NuminaMath-CoT): no answer column (the solution's box is the gold answer);
# its `source` is where the problem is from, not r1lab's source; `messages` repeats the pair.
NUMINA = [
    {"source": "olympiads", "problem": "Find the remainder of $2^{10}$ divided by 7.",
     "solution": "$2^3 = 8 \\equiv 1$, so $2^{10} = (2^3)^3 \\cdot 2 \\equiv 2$. The remainder is $\\boxed{2}$.",
     "messages": [{"role": "user", "content": "Find the remainder of $2^{10}$ divided by 7."},
                  {"role": "assistant", "content": "... $\\boxed{2}$."}]},
    {"source": "synthetic_math", "problem": "What is $12 \\times 12$?", "solution": "$12 \\times 12 = \\boxed{144}$.",
     "messages": [{"role": "user", "content": "What is $12 \\times 12$?"}, {"role": "assistant", "content": "144"}]},
]

# Open-R1 (open-r1/OpenR1-Math-220k): several generations per problem, flagged by math-verify; the
# first one flagged correct is the one to import (here: the second of the first row).
OPENR1 = [
    {"problem": "What is $7 + 8$?", "solution": "$7 + 8 = 15$.", "answer": "15", "problem_type": "Algebra",
     "question_type": "math-word-problem", "source": "olympiads", "uuid": "u-1",
     "is_reasoning_complete": [True, True],
     "generations": ["<think>\n7 + 8 = 16.\n</think>\n\nThe answer is $\\boxed{16}$.",
                     "<think>\n7 + 8: 7 + 3 = 10, plus 5 is 15. Wait, let me check: 8 + 7 = 15.\n</think>\n\nThe sum is $\\boxed{15}$."],
     "correctness_math_verify": [False, True], "correctness_llama": None, "finish_reasons": None, "correctness_count": 1,
     "messages": [{"role": "user", "content": "What is $7 + 8$?"}, {"role": "assistant", "content": "<think>\n...\n</think>\n$\\boxed{15}$"}]},
    {"problem": "What is $9 \\times 6$?", "solution": "$54$.", "answer": "54", "problem_type": "Algebra",
     "question_type": "math-word-problem", "source": "cn_contest", "uuid": "u-2",
     "is_reasoning_complete": [True],
     "generations": ["<think>\n9 times 6 is 54.\n</think>\n\n$\\boxed{54}$"],
     "correctness_math_verify": [True], "correctness_llama": None, "finish_reasons": None, "correctness_count": 1,
     "messages": [{"role": "user", "content": "What is $9 \\times 6$?"}, {"role": "assistant", "content": "<think>\n9 times 6 is 54.\n</think>\n\n$\\boxed{54}$"}]},
]

# Reasoning traces as chat (open-r1/Mixture-of-Thoughts): messages with <think> in the assistant turn.
CHAT = [
    {"messages": [{"role": "user", "content": "What is 6 squared?"},
                  {"role": "assistant", "content": "<think>\n6 * 6 = 36.\n</think>\n\n$\\boxed{36}$"}],
     "num_tokens": 40, "source": "open-r1/math"},
    {"messages": [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": "Is 17 prime?"},
                  {"role": "assistant", "content": "<think>\n17 has no divisor between 2 and 4.\n</think>\n\nYes: 17 is prime."}],
     "num_tokens": 52, "source": "open-r1/math"},
]

# ShareGPT-style traces (bespokelabs/Bespoke-Stratos-17k): `conversations` of {from, value}.
SHAREGPT = [
    {"system": "Think first.", "conversations": [{"from": "user", "value": "What is 10 - 3?"},
                                                 {"from": "assistant", "value": "<think>10 - 3 = 7.</think>\n\n$\\boxed{7}$"}]},
]

# APPS / TACO (codeparrot/apps, BAAI/TACO): `input_output` is JSON text; call-based rows have an
# `fn_name`; TACO's LeetCode rows define it on `class Solution`; outputs may be wrapped in a list.
APPS = [
    {"problem_id": 11, "question": "Write a function add(a, b) that returns a + b.",
     "solutions": json.dumps(["def add(a, b):\n    return a + b"]), "starter_code": "def add(a, b):",
     "input_output": json.dumps({"fn_name": "add", "inputs": [[1, 2], [-4, 4]], "outputs": [[3], [0]]}),
     "difficulty": "introductory", "url": "https://example.org/problems/11"},
    {"problem_id": 12, "question": "Return the pair (min, max) of a list of numbers.",
     "solutions": json.dumps(["class Solution:\n    def minMax(self, xs):\n        return min(xs), max(xs)"]),
     "starter_code": "class Solution:\n    def minMax(self, xs):",
     "input_output": json.dumps({"fn_name": "minMax", "inputs": [[[3, 1, 2]]], "outputs": [[1, 3]]}),
     "difficulty": "interview", "url": "https://example.org/problems/12"},
]
APPS_SOLUTIONS = {"11": "def add(a, b):\n    return a + b\n",
                  "12": "class Solution:\n    def minMax(self, xs):\n        return min(xs), max(xs)\n"}
# A stdin/stdout row (no fn_name): the code reward cannot feed it stdin.
APPS_STDIN = {"problem_id": 13, "question": "Read n and print n * 2.", "solutions": "[]", "starter_code": "",
              "input_output": json.dumps({"inputs": ["3\n"], "outputs": ["6\n"]}), "difficulty": "introductory", "url": ""}

# MBPP (google-research-datasets/mbpp, "full"): `text`, `test_list` of assertions, `test_setup_code`.
MBPP = [
    {"task_id": 601, "text": "Write a function to square a number.", "code": "def square(x):\n    return x * x",
     "test_list": ["assert square(3) == 9", "assert square(-2) == 4"], "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 602, "text": "Write a function to return the square root of a number, rounded to 2 places.",
     "code": "import math\ndef root(x):\n    return round(math.sqrt(x), 2)",
     "test_list": ["assert root(2) == 1.41", "assert root(9) == 3.0"], "test_setup_code": "import math",
     "challenge_test_list": []},
]

KINDS = ("jsonl", "csv", "parquet", "zip", "tar.gz")


def encode(rows: list[dict], kind: str, *, name: str = "data") -> tuple[str, bytes]:
    """(filename, bytes) of `rows` written as an upload of `kind` (one of KINDS)."""
    if kind == "jsonl":
        return f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()
    if kind == "csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else json.dumps(r[c]) if isinstance(r.get(c), (list, dict)) else r[c]
                             for c in columns])
        return f"{name}.csv", buf.getvalue().encode()
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        return f"{name}.parquet", buf.getvalue()
    if kind in ("zip", "tar.gz"):
        return f"{name}.{kind}", save_to_disk_archive({"train": rows} if kind == "tar.gz" else rows, kind=kind)
    raise ValueError(kind)


def save_to_disk_archive(rows_or_splits, *, kind: str = "zip") -> bytes:
    """A `datasets` save_to_disk folder (a Dataset, or a DatasetDict for {split: rows}), archived as
    `zip -r ds.zip ds/` or `tar czf ds.tar.gz ds/` would."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ds"
        if isinstance(rows_or_splits, dict):
            datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows_or_splits.items()}).save_to_disk(folder)
        else:
            datasets.Dataset.from_list(rows_or_splits).save_to_disk(folder)
        buf = io.BytesIO()
        if kind == "zip":
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.rglob("*")):
                    zf.write(path, path.relative_to(tmp).as_posix())
        else:
            with tarfile.open(fileobj=buf, mode="w:gz") as tf:
                tf.add(folder, arcname="ds")
        return buf.getvalue()
