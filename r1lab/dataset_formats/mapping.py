"""Which public format a file is, how its columns map onto r1lab's rows, and each row's gold answer.

One place for both imports (no ORM, no Django): the prompt-set import (rows the GRPO, eval and
rejection-sampling stages read: `{id, prompt, answer?, tests?, type, target_lang?}`) and the
cold-start import (curation examples: prompt, reasoning, summary, gold answer).

`detect(columns, sample)` looks at the column names (and, for GSM8K and the code-test shapes, at
the first rows' values) and returns a `Mapping`: the format it recognised and, for each r1lab
field, the column it is read from. The preview shows the mapping and the user may change any
field of it (`Mapping.from_form`); the file is then read again with theirs.

Formats (docs/datasets.md has examples of each):

| key | as downloaded | prompt | gold answer | other |
|---|---|---|---|---|
| gsm8k | `question`, `answer` ending in `#### 72` | question | `####` tail of answer | reasoning: answer before `####` |
| math | MATH / MATH-500: `problem`, `solution`, `answer`?, `level`, `type`/`subject` | problem | answer, else last `\\boxed{}` of solution | reasoning: solution |
| problem_answer | DeepScaleR / NuminaMath / Open-R1: `problem`, `answer`, `solution` | problem | answer | reasoning: solution |
| generations | Open-R1 traces: `problem`, `generations`, `correctness_math_verify` | problem | answer | completion: the first generation flagged correct |
| chat | `messages` (or ShareGPT `conversations`) | first user turn | `answer` if any | completion: last assistant turn |
| apps | APPS / TACO / DeepCoder: `question`/`problem`, `input_output` (or `tests`) JSON | question | – | tests: one assertion per call-based case |
| mbpp | MBPP: `text`/`prompt`, `test_list`, `test_setup_code`/`test_imports` | text | – | tests: test_list |
| native | r1lab's own columns (`prompt`, `answer`, `tests`, `reasoning`, `gold_answer`, ...) | prompt | answer / gold_answer | everything else by name |

Gold answers (`gold_answer`): `hash_tail` is the text after the last `####`; `boxed` the content of
the last `\\boxed{…}` or `\\fbox{…}` with balanced braces (training_backend's `last_boxed`, the same
function the accuracy reward uses); `as_is` the column's value; `auto` the first of these that
applies (`####`, then a box, then the value).
"""
from __future__ import annotations

import json
from collections.abc import Mapping as MappingABC
from dataclasses import asdict, dataclass, fields

from r1lab.dataset_formats.readers import RowError
from training_backend.rewards.parsing import last_boxed

FORMATS = {
    "gsm8k": "GSM8K (question, answer ending in #### 72)",
    "math": "MATH / MATH-500 (problem, solution with \\boxed{}, answer, level, subject)",
    "problem_answer": "DeepScaleR / NuminaMath / Open-R1 (problem, answer, solution)",
    "generations": "Open-R1 reasoning traces (problem, generations, correctness flags)",
    "chat": "reasoning traces as chat messages",
    "apps": "code with input/output tests (APPS / TACO / DeepCoder input_output)",
    "mbpp": "code with assertion tests (MBPP test_list)",
    "native": "r1lab's own columns",
}
ANSWER_RULES = {
    "as_is": "the value as it is",
    "hash_tail": "the tail after ####",
    "boxed": "the last \\boxed{…}",
    "auto": "#### tail, else last \\boxed{…}, else as it is",
}
TARGETS = ("prompts", "cold_start")
# Mapping fields (columns) each import reads, in the order the preview shows them.
COLUMN_FIELDS = {
    "prompts": ("prompt", "messages", "answer", "tests", "tests_setup", "id"),
    "cold_start": ("prompt", "messages", "generations", "correct", "reasoning", "completion", "summary", "answer", "id"),
}
FIELD_HELP = {
    "prompt": "the problem the model is asked",
    "messages": "a chat: the prompt is its first user turn, the completion its last assistant turn",
    "generations": "a list of completions per problem: one is imported",
    "correct": "a list of true/false per generation: the first true one is imported",
    "reasoning": "a worked solution: the chain of thought (a #### tail is cut off)",
    "completion": "<think>…</think> text: split into reasoning and summary",
    "summary": "the final answer text (default: the gold answer)",
    "answer": "the column the gold answer is extracted from",
    "tests": "a list of Python assertions, or APPS-style input_output JSON",
    "tests_setup": "code run before each test (MBPP test_setup_code / test_imports)",
    "id": "an external id",
}
# r1lab's own columns that a native file carries by name (the public formats have look-alikes with
# other meanings: NuminaMath's `source` is "olympiads", MATH's `type` is "Algebra").
NATIVE_EXTRAS = {
    "prompts": ("type", "target_lang"),
    "cold_start": ("language", "lang", "tags", "source", "source_ref"),
}
_NATIVE_ONLY = {"reasoning", "summary", "completion", "gold_answer", "source_ref", "tags", "language", "lang", "target_lang"}
_CORRECT_FLAGS = ("correctness_math_verify", "correctness_llama", "is_correct", "correct")
_ID_COLUMNS = ("id", "unique_id", "uuid", "problem_id", "task_id")
MAX_TEST_CASES = 100  # assertions made from one row's input_output (APPS rows can have thousands)


@dataclass(frozen=True)
class Mapping:
    """The format a file is read as and, per r1lab field, the column it comes from ("" = none)."""

    format: str = "native"
    prompt: str = ""
    messages: str = ""
    generations: str = ""
    correct: str = ""
    reasoning: str = ""
    completion: str = ""
    summary: str = ""
    answer: str = ""
    answer_rule: str = "as_is"
    tests: str = ""
    tests_setup: str = ""
    id: str = ""
    split: str = ""  # a DatasetDict folder's split

    @property
    def label(self) -> str:
        return FORMATS.get(self.format, self.format)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: MappingABC | None) -> Mapping | None:
        """A stored mapping (unknown keys ignored); None for an empty one (detect instead)."""
        if not data:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in names and v is not None})

    def columns_used(self, target: str) -> set[str]:
        used = {getattr(self, f) for f in COLUMN_FIELDS[target]} - {""}
        if self.format == "native":
            used |= set(NATIVE_EXTRAS[target])
        return used

    def problems(self, *, target: str, columns: list[str]) -> dict[str, str]:
        """What is wrong with this mapping for that file, per field (empty: fine)."""
        errors: dict[str, str] = {}
        for name in COLUMN_FIELDS[target]:
            column = getattr(self, name)
            if column and column not in columns:
                errors[name] = f"the file has no column {column!r}"
        if self.answer_rule not in ANSWER_RULES:
            errors["answer_rule"] = f"unknown rule {self.answer_rule!r}"
        if not (self.prompt or self.messages):
            errors["prompt"] = "choose the prompt column (or a messages column)"
        if self.format not in FORMATS:
            errors["format"] = f"unknown format {self.format!r}"
        return errors


def detect(columns: list[str], sample: list[dict]) -> Mapping:
    """The format of a file with these columns (first rows in `sample`) and its default mapping."""
    cols = set(columns)

    def first(*names: str) -> str:
        return next((n for n in names if n in cols), "")

    id_col = first(*_ID_COLUMNS)
    if cols & _NATIVE_ONLY:
        return _native(first, id_col)
    if "generations" in cols:
        answer = first("answer")
        return Mapping(format="generations", prompt=first("problem", "question", "prompt"), generations="generations",
                       correct=first(*_CORRECT_FLAGS), answer=answer or first("solution"),
                       answer_rule="as_is" if answer else "boxed", id=id_col)
    io_col = "input_output" if "input_output" in cols else ""
    if not io_col and "tests" in cols and any(_looks_like_io(row.get("tests")) for row in sample):
        io_col = "tests"  # DeepCoder: a `tests` column of input/output JSON
    if io_col:
        return Mapping(format="apps", prompt=first("question", "problem", "prompt"), tests=io_col, id=id_col)
    if "test_list" in cols:
        return Mapping(format="mbpp", prompt=first("text", "prompt", "question"), tests="test_list",
                       tests_setup=first("test_setup_code", "test_imports"), id=id_col)
    if {"question", "answer"} <= cols and any("####" in str(row.get("answer") or "") for row in sample):
        return Mapping(format="gsm8k", prompt="question", reasoning="answer", answer="answer", answer_rule="hash_tail", id=id_col)
    problem = first("problem", "question")
    if problem and cols & {"solution", "answer"}:
        is_math = bool(cols & {"level", "subject"}) or {"type", "solution"} <= cols
        answer = first("answer")
        return Mapping(format="math" if is_math else "problem_answer", prompt=problem, reasoning=first("solution"),
                       answer=answer or "solution", answer_rule="as_is" if answer else "boxed", id=id_col)
    chat = first("messages", "conversations")
    if chat:
        return Mapping(format="chat", prompt=first("prompt", "problem", "question"), messages=chat,
                       answer=first("answer", "gold_answer"), answer_rule="auto", id=id_col)
    return _native(first, id_col)


def _native(first, id_col: str) -> Mapping:
    return Mapping(format="native", prompt=first("prompt", "question", "problem"), messages=first("messages"),
                   reasoning=first("reasoning"), completion=first("completion"), summary=first("summary"),
                   answer=first("gold_answer", "answer"), answer_rule="as_is", tests=first("tests"), id=id_col)


def _looks_like_io(value) -> bool:
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    return isinstance(value, dict) and "inputs" in value and "outputs" in value


# --- gold answers ------------------------------------------------------------------------------

def gold_answer(value, *, rule: str, column: str) -> str:
    """The gold answer in `value` (a cell of `column`) by `rule`; "" for an empty cell; RowError if
    the rule finds nothing."""
    text = _text(value, column).strip()
    if not text:
        return ""
    if rule == "hash_tail" or (rule == "auto" and "####" in text):
        if "####" not in text:
            raise RowError(f"`{column}` has no `#### answer` at its end")
        tail = text.rsplit("####", 1)[1].strip()
        if not tail:
            raise RowError(f"`{column}` has nothing after its `####`")
        return tail
    if rule == "boxed" or (rule == "auto" and ("\\boxed" in text or "\\fbox" in text)):
        boxed = last_boxed(text)
        if boxed is None:
            raise RowError(f"`{column}` has no \\boxed{{…}} with balanced braces")
        return boxed
    return text


def strip_hash_tail(text: str) -> str:
    """A GSM8K solution without its `#### 72` line: the reasoning."""
    return text.rsplit("####", 1)[0].rstrip() if "####" in text else text


# --- cells ---------------------------------------------------------------------------------------

def _text(value, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"`{column}` must be text, got {type(value).__name__}")
    return str(value)


def _json_cell(value, column: str, *, decode: bool):
    """A list/object cell; JSON text is decoded when `decode` (CSV cells, APPS' string columns)."""
    if decode and isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"`{column}` is not JSON ({exc.msg})") from exc
    return value


def chat_messages(value, column: str, *, decode: bool) -> list[dict]:
    """[{role, content}] from `{role, content}` or ShareGPT `{from, value}` messages."""
    value = _json_cell(value, column, decode=decode)
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise RowError(f"`{column}` must be a list of {{role, content}}")
    roles = {"human": "user", "gpt": "assistant"}
    out = []
    for m in value:
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        out.append({"role": roles.get(role, role), "content": content})
    return out


def _chat_parts(value, column: str, *, decode: bool) -> tuple[str, str]:
    messages = chat_messages(value, column, decode=decode)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assistants = [m["content"] for m in messages if m["role"] == "assistant"]
    if not users:
        raise RowError(f"`{column}` has no user message")
    return _text(users[0], column), _text(assistants[-1], column) if assistants else ""


def _picked_generation(raw: dict, m: Mapping, *, decode: bool) -> str:
    gens = _json_cell(raw.get(m.generations), m.generations, decode=decode)
    if not isinstance(gens, list) or not gens:
        raise RowError(f"`{m.generations}` must be a non-empty list of completions")
    if not m.correct:
        return _text(gens[0], m.generations)
    flags = _json_cell(raw.get(m.correct), m.correct, decode=decode)
    if not isinstance(flags, list) or len(flags) != len(gens):
        raise RowError(f"`{m.correct}` must be a list of {len(gens)} true/false flags, one per generation")
    for gen, flag in zip(gens, flags):
        if flag is True:
            return _text(gen, m.generations)
    raise RowError(f"no generation is marked correct in `{m.correct}`")


def _tests(raw: dict, m: Mapping) -> list[str]:
    """Python assertion snippets (training_backend's code reward runs each after the solution)."""
    value = _json_cell(raw.get(m.tests), m.tests, decode=True)
    if value in (None, "", []):
        return []
    if isinstance(value, dict):
        tests = io_tests(value, m.tests)
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        tests = [t for t in value if t.strip()]
    else:
        raise RowError(f"`{m.tests}` must be a list of assertion strings or input_output JSON")
    if m.tests_setup:
        setup = raw.get(m.tests_setup)
        setup = "\n".join(setup) if isinstance(setup, list) else _text(setup, m.tests_setup)
        if setup.strip():
            tests = [f"{setup.rstrip()}\n{t}" for t in tests]
    return tests


def io_tests(spec: dict, column: str) -> list[str]:
    """Assertions for APPS-style `{"inputs": [...], "outputs": [...], "fn_name": "f"}` (call-based).

    Each case calls `fn_name` (a method of `Solution` when the solution defines that class, as
    LeetCode-style starter code does) with the case's arguments and compares as APPS' own harness
    does: a tuple result counts as a list, and an expected `[x]` also accepts `x`. The values travel
    as JSON text inside the snippet, so any JSON value is safe to embed.
    """
    inputs, outputs = spec.get("inputs"), spec.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise RowError(f"`{column}` needs `inputs` and `outputs` lists of the same length")
    fn_name = spec.get("fn_name")
    if not fn_name:
        # The sandbox runs the solution once with no stdin, then each test as Python in its
        # namespace: a program that reads stdin cannot be fed a case. Say so instead of importing
        # tests that always fail.
        raise RowError(f"`{column}` has stdin/stdout tests (no `fn_name`): the code reward runs Python "
                       "assertions against the solution's functions and cannot feed stdin; only "
                       "call-based problems can be imported")
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
        raise RowError(f"`{column}`: `fn_name` {fn_name!r} is not a Python name")
    out = []
    for args, want in list(zip(inputs, outputs))[:MAX_TEST_CASES]:
        args = args if isinstance(args, list) else [args]
        out.append(
            "import json as _json\n"
            f"_f = getattr(Solution(), {fn_name!r}) if isinstance(globals().get('Solution'), type) "
            f"and hasattr(Solution, {fn_name!r}) else {fn_name}\n"
            f"_got = _f(*_json.loads({json.dumps(args)!r}))\n"
            "_got = list(_got) if isinstance(_got, tuple) else _got\n"
            f"_want = _json.loads({json.dumps(want)!r})\n"
            "assert _got == _want or (isinstance(_want, list) and len(_want) == 1 and _got == _want[0])"
        )
    return out


# --- rows -----------------------------------------------------------------------------------------

def _prompt_text(raw: dict, m: Mapping, *, decode: bool) -> str:
    prompt = _text(raw.get(m.prompt), m.prompt) if m.prompt else ""
    if not prompt.strip() and m.messages and raw.get(m.messages) not in (None, ""):
        prompt = _chat_parts(raw[m.messages], m.messages, decode=decode)[0]
    return prompt


def _gold(raw: dict, m: Mapping) -> str:
    return gold_answer(raw.get(m.answer), rule=m.answer_rule, column=m.answer) if m.answer else ""


def prompt_row(raw: dict, *, mapping: Mapping, number: int, kind: str, text_cells: bool) -> dict:
    """A prompt row for the trainers: `{id, prompt, type, answer?, tests?, target_lang?}`; RowError."""
    m = mapping
    prompt = _prompt_text(raw, m, decode=text_cells)
    if not prompt.strip():
        raise RowError(f"`{m.prompt or m.messages}` must be a non-empty string")
    ident = raw.get(m.id) if m.id else None
    row: dict = {"id": str(ident) if ident not in (None, "") else f"row-{number}", "prompt": prompt}
    row["type"] = (_text(raw.get("type"), "type") if m.format == "native" else "") or kind
    if row["type"] not in ("math", "code", "general"):
        raise RowError(f"`type` must be math, code or general, got {row['type']!r}")
    answer = _gold(raw, m)
    if answer:
        row["answer"] = answer
    elif row["type"] == "math":
        raise RowError(f"a math prompt needs a gold answer (from `{m.answer}`)" if m.answer
                       else "a math prompt needs a gold answer: map the answer column")
    tests = _tests(raw, m) if m.tests else []
    if tests:
        row["tests"] = tests
    elif row["type"] == "code":
        raise RowError(f"a code prompt needs tests (from `{m.tests}`)" if m.tests else "a code prompt needs tests: map the tests column")
    if m.format == "native" and raw.get("target_lang"):
        row["target_lang"] = _text(raw["target_lang"], "target_lang")
    return row


def cold_start_fields(raw: dict, *, mapping: Mapping, text_cells: bool) -> dict:
    """The cold-start example in r1lab's column names (`prompt`, `reasoning`, `summary`,
    `completion`, `gold_answer`, and in a native file `language`, `tags`, `source`, `source_ref`),
    for curation's validation; RowError when a mapped column cannot be read."""
    m = mapping
    out: dict = {"prompt": _prompt_text(raw, m, decode=text_cells)}
    gold = _gold(raw, m)
    out["gold_answer"] = gold
    completion = _text(raw.get(m.completion), m.completion) if m.completion else ""
    if not completion.strip() and m.generations:
        completion = _picked_generation(raw, m, decode=text_cells)
    if not completion.strip() and m.messages and raw.get(m.messages) not in (None, ""):
        completion = _chat_parts(raw[m.messages], m.messages, decode=text_cells)[1]
    out["completion"] = completion
    reasoning = strip_hash_tail(_text(raw.get(m.reasoning), m.reasoning)) if m.reasoning else ""
    out["reasoning"] = reasoning
    summary = _text(raw.get(m.summary), m.summary) if m.summary else ""
    if not summary.strip() and reasoning.strip() and not completion.strip() and m.format != "native":
        summary = gold  # a public set's solution is the reasoning; its answer the summary
    out["summary"] = summary
    if m.id and raw.get(m.id) not in (None, ""):
        out["id"] = raw[m.id]
    if m.format == "native":
        for key in NATIVE_EXTRAS["cold_start"]:
            if key in raw:
                out["language" if key == "lang" else key] = raw[key]
    return out
