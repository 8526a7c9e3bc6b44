"""The runs list's query language: find runs by config values, summary metrics and run fields.

    config.learning_rate < 2e-6 and reward.last > 0.6 and template = "r1_zero"
    (status = "failed" or status = "crashed") and not name ~ "smoke"

Grammar (keywords in any case; `~` is "contains", case-insensitive):

    query      := or EOF
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" or ")" | comparison
    comparison := field op value            op := = | != | < | <= | > | >=  | ~
    value      := number | "string" | 'string' | true | false
    field      := name | `any key`.(last|min|max)

What a field names:
- `name`, `project`, `status`, `created`: the run's own fields. status is one of running,
  succeeded, failed, cancelled, crashed, stale (running but silent, as the list shows it);
  created compares with "YYYY-MM-DD" (that whole day) or "YYYY-MM-DDTHH:MM[:SS]".
- `config.a.b`: a value of the run's config by dotted path; a bare name that is none of the
  above is a top-level config key (`template` = `config.template`). The literal's type picks the
  comparison: a number compares JSON numbers (and numeric strings, as MLflow params are stored),
  numerically and exactly; a string compares JSON strings (=, !=, ~); true/false JSON booleans.
- `<key>.last`, `.min`, `.max`: the summary of a metric (tracking.Series: the value at its highest
  step, its extremes, kept by ingest), for any logged key (`rewards/accuracy/mean.last`);
  backticks quote a key with other characters (`` `my key`.max ``).

A comparison holds only where the value exists and has the literal's type (`config.x != 1`
matches runs whose x is a number other than 1); `not` is the complement (`not config.x = 1`
also matches runs without x).

The parser is a tokenizer and a recursive descent over the grammar above: nothing is evaluated,
and every error names its column and what was expected there (QueryError). The compiler turns
the tree into Django expressions whose user-given parts are all query parameters: names, paths,
keys and values never become SQL or ORM lookup text (`config.lr__gt` is a key named `lr__gt`).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, Subquery
from django.utils import timezone

MAX_QUERY_LEN = 2000
MAX_DEPTH = 32  # nested parentheses / nots
MAX_STRING_LEN = 500
RUN_FIELDS = {"name": "name", "project": "project", "status": "status", "created": "created_at"}
STATUSES = ("running", "succeeded", "failed", "cancelled", "crashed", "stale")
AGGREGATES = {"last": "last_value", "min": "min_value", "max": "max_value"}
OPS = ("=", "!=", "<", "<=", ">", ">=", "~")
KEYWORDS = ("and", "or", "not", "true", "false")
# a config path segment: what a Python/JSON config key usually is
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")
_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_./@\-]")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


class QueryError(ValueError):
    """A query (or a column / sort spec) that does not parse: `column` is 1-based."""

    def __init__(self, column: int, message: str, text: str = ""):
        self.column, self.message, self.text = column, message, text
        super().__init__(f"column {column}: {message}")


# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # name | qname | string | number | op | ( | ) | . | end
    text: str  # as written (names, ops), or the decoded string
    col: int  # 1-based
    value: float | None = None


def _shown(tok: Token) -> str:
    if tok.kind == "end":
        return "the end of the query"
    if tok.kind == "string":
        return f"the string {json.dumps(tok.text[:30])}"
    return f"'{tok.text[:30]}'"


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_QUERY_LEN:
        raise QueryError(MAX_QUERY_LEN + 1, f"the query is longer than {MAX_QUERY_LEN} characters", text)
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(Token(c, c, col))
            i += 1
        elif c in "=<>!~":
            two = text[i:i + 2]
            if two in ("!=", "<=", ">="):
                out.append(Token("op", two, col))
                i += 2
            elif c == "!":
                raise QueryError(col, "expected '!=' ('!' alone is not an operator; use `not` to negate)", text)
            else:
                if two in ("==", "=<", "=>"):
                    raise QueryError(col, f"expected one of {', '.join(OPS)}, found '{two}'", text)
                out.append(Token("op", c, col))
                i += 1
        elif c in "\"'":
            j, chars = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(text[j])
                j += 1
            if j >= n:
                raise QueryError(col, f"expected a closing {c} for the string that starts here", text)
            if len(chars) > MAX_STRING_LEN:
                raise QueryError(col, f"a string may hold at most {MAX_STRING_LEN} characters", text)
            out.append(Token("string", "".join(chars), col))
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise QueryError(col, "expected a closing ` for the key that starts here", text)
            key = text[i + 1:j]
            if not key or len(key) > 200:
                raise QueryError(col, "a quoted key must have 1 to 200 characters", text)
            out.append(Token("qname", key, col))
            i = j + 1
        elif c == "." and out and out[-1].kind == "qname":
            out.append(Token(".", ".", col))
            i += 1
        elif c.isdigit() or c in "+-." :
            m = _NUMBER.match(text, i)
            if not m:
                raise QueryError(col, f"expected a number, found '{text[i:i + 10]}'", text)
            raw = m.group(0)
            try:
                value = float(raw)
            except (ValueError, OverflowError):
                value = math.inf
            if not math.isfinite(value) or len(raw) > 60:
                raise QueryError(col, f"the number {raw[:30]} is out of range (a finite double, at most 60 characters)", text)
            out.append(Token("number", raw, col, value))
            i = m.end()
            if i < n and _NAME_CHAR.match(text[i]):
                raise QueryError(i + 1, f"expected an operator or `and`/`or` after the number {raw}, found '{text[i]}'", text)
        elif _NAME_START.match(c):
            j = i + 1
            while j < n and _NAME_CHAR.match(text[j]):
                j += 1
            out.append(Token("name", text[i:j], col))
            i = j
        else:
            raise QueryError(col, f"unexpected character {c!r}", text)
    out.append(Token("end", "", n + 1))
    return out


# --- the tree -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    kind: str  # run | config | metric
    text: str  # as written
    col: int
    name: str = ""  # run: the model field; metric: the key
    path: tuple[str, ...] = ()  # config
    agg: str = ""  # metric: last | min | max

    @property
    def label(self) -> str:
        if self.kind == "config":
            return "config." + ".".join(self.path)
        if self.kind == "metric":
            key = self.name if _plain_key(self.name) else f"`{self.name}`"
            return f"{key}.{self.agg}"
        return self.text.lower()


def _plain_key(key: str) -> bool:
    return bool(_NAME_START.match(key[:1])) and all(_NAME_CHAR.match(c) for c in key)


@dataclass(frozen=True)
class Cmp:
    field: Field
    op: str
    value: object  # float | str | bool
    col: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    items: tuple


@dataclass(frozen=True)
class Not:
    item: object


def field_from_name(tok: Token, text: str) -> Field:
    """What a name token (or a quoted key with its `.agg`) names; QueryError when nothing."""
    raw = tok.text
    low = raw.lower()
    if low in RUN_FIELDS:
        return Field("run", raw, tok.col, name=RUN_FIELDS[low])
    if low.startswith("config."):
        segments = raw[len("config."):].split(".")
        for seg in segments:
            if not _SEGMENT.fullmatch(seg):
                raise QueryError(tok.col, f"expected a config path like config.optimizer.lr, found '{raw[:60]}' "
                                          "(path segments are letters, digits, _ and -)", text)
        return Field("config", raw, tok.col, path=tuple(segments))
    if low == "config":
        raise QueryError(tok.col, "expected a config path after config (config.learning_rate)", text)
    head, dot, agg = raw.rpartition(".")
    if dot:
        if agg.lower() in AGGREGATES and head:
            return Field("metric", raw, tok.col, name=head, agg=agg.lower())
        raise QueryError(tok.col, f"expected a metric summary <key>.last, .min or .max, or config.<path>, "
                                  f"found '{raw[:60]}'", text)
    if "/" in raw or "@" in raw:
        raise QueryError(tok.col, f"'{raw[:60]}' looks like a metric key: expected {raw[:60]}.last, .min or .max", text)
    return Field("config", raw, tok.col, path=(raw,))


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, expected: str, tok: Token | None = None) -> QueryError:
        tok = tok or self.tok
        return QueryError(tok.col, f"expected {expected}, found {_shown(tok)}", self.text)

    def keyword(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.text.lower() == word

    def parse(self):
        if self.tok.kind == "end":
            return None
        tree = self.or_(0)
        if self.tok.kind == ")":
            raise QueryError(self.tok.col, "expected `and`, `or` or the end of the query, found ')' that closes no '('",
                             self.text)
        if self.tok.kind != "end":
            raise self.error("`and`, `or` or the end of the query")
        return tree

    def or_(self, depth):
        items = [self.and_(depth)]
        while self.keyword("or"):
            self.i += 1
            items.append(self.and_(depth))
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self, depth):
        items = [self.not_(depth)]
        while self.keyword("and"):
            self.i += 1
            items.append(self.not_(depth))
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_(self, depth):
        if depth >= MAX_DEPTH:
            raise QueryError(self.tok.col, f"the query nests deeper than {MAX_DEPTH} levels", self.text)
        if self.keyword("not"):
            self.i += 1
            return Not(self.not_(depth + 1))
        if self.tok.kind == "(":
            self.i += 1
            inner = self.or_(depth + 1)
            if self.tok.kind != ")":
                raise self.error("')' or `and` / `or`")
            self.i += 1
            return inner
        return self.comparison()

    def field(self) -> Field:
        tok = self.tok
        if tok.kind == "qname":
            self.i += 1
            if self.tok.kind != "." or self.toks[self.i + 1].kind != "name" \
                    or self.toks[self.i + 1].text.lower() not in AGGREGATES:
                raise self.error(".last, .min or .max after the quoted key")
            agg = self.toks[self.i + 1].text.lower()
            self.i += 2
            return Field("metric", f"`{tok.text}`.{agg}", tok.col, name=tok.text, agg=agg)
        if tok.kind != "name" or tok.text.lower() in KEYWORDS:
            raise self.error("a field (config.<path>, <metric>.last|min|max, name, project, status, created) or '('")
        self.i += 1
        return field_from_name(tok, self.text)

    def comparison(self) -> Cmp:
        field = self.field()
        op_tok = self.tok
        if op_tok.kind != "op":
            raise self.error(f"an operator ({' '.join(OPS)}) after {field.text[:60]}")
        self.i += 1
        vt = self.tok
        if vt.kind == "number":
            value: object = vt.value
        elif vt.kind == "string":
            value = vt.text
        elif vt.kind == "name" and vt.text.lower() in ("true", "false"):
            value = vt.text.lower() == "true"
        else:
            raise self.error(f"a value (a number, a \"quoted string\", true or false) after '{op_tok.text}'", vt)
        self.i += 1
        check_types(field, op_tok, value, vt, self.text)
        return Cmp(field, op_tok.text, value, field.col)


def check_types(field: Field, op: Token, value, vt: Token, text: str) -> None:
    """A comparison the field can make with this literal; QueryError at the offending token."""
    is_num = isinstance(value, float)
    is_bool = isinstance(value, bool)
    if field.kind == "metric":
        if not is_num:
            raise QueryError(vt.col, f"{field.label} is a number: expected a number, found {_shown(vt)}", text)
        if op.text == "~":
            raise QueryError(op.col, f"{field.label} is a number: expected one of = != < <= > >=, found '~'", text)
        return
    if field.kind == "config":
        if is_bool and op.text not in ("=", "!="):
            raise QueryError(op.col, f"true/false compare with = or != only, found '{op.text}'", text)
        if isinstance(value, str) and not is_bool and op.text not in ("=", "!=", "~"):
            raise QueryError(op.col, f"a string compares with =, != or ~ (contains), found '{op.text}'", text)
        if is_num and op.text == "~":
            raise QueryError(op.col, "~ (contains) takes a \"quoted string\"", text)
        return
    name = field.name
    if name == "created_at":
        if not isinstance(value, str) or is_bool:
            raise QueryError(vt.col, f"created compares with a date, \"YYYY-MM-DD\" or \"YYYY-MM-DDTHH:MM\", found {_shown(vt)}", text)
        if op.text == "~":
            raise QueryError(op.col, "created takes = != < <= > >=, not ~", text)
        _date_range(value, vt.col, text)
        return
    if not isinstance(value, str) or is_bool:
        raise QueryError(vt.col, f"{field.label} is text: expected a \"quoted string\", found {_shown(vt)}", text)
    if op.text not in ("=", "!=", "~"):
        raise QueryError(op.col, f"{field.label} is text: expected =, != or ~, found '{op.text}'", text)
    if name == "status" and (op.text == "~" or value.lower() not in STATUSES):
        raise QueryError(vt.col if op.text != "~" else op.col,
                         f"status is one of {', '.join(STATUSES)} (compared with = or !=), found {_shown(vt)}", text)


def _date_range(value: str, col: int, text: str) -> tuple[datetime, datetime]:
    """[start, end) of a date ("YYYY-MM-DD": the day) or a minute/second instant, aware."""
    for fmt, width in (("%Y-%m-%d", timedelta(days=1)), ("%Y-%m-%dT%H:%M", timedelta(minutes=1)),
                       ("%Y-%m-%d %H:%M", timedelta(minutes=1)), ("%Y-%m-%dT%H:%M:%S", timedelta(seconds=1)),
                       ("%Y-%m-%d %H:%M:%S", timedelta(seconds=1))):
        try:
            start = datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        if start.year < 2 or start.year > 9998:
            break
        start = timezone.make_aware(start) if settings.USE_TZ else start
        return start, start + width
    raise QueryError(col, f"expected a date \"YYYY-MM-DD\" or \"YYYY-MM-DDTHH:MM[:SS]\", found {json.dumps(value[:30])}", text)


def parse(text: str):
    """The query's tree (None for an empty query); QueryError when it does not parse."""
    return _Parser(text or "").parse()


def parse_field(text: str) -> Field:
    """One field, as in a column or sort spec (`reward.last`, `config.lr`, `created`)."""
    p = _Parser(text)
    if p.tok.kind == "end":
        raise QueryError(1, "expected a field", text)
    field = p.field()
    if p.tok.kind != "end":
        raise p.error("the end of the field")
    return field


def fields_of(tree) -> list[Field]:
    """The fields a tree compares, in order, each once."""
    out: list[Field] = []

    def walk(node):
        if isinstance(node, Cmp):
            if node.field.label not in {f.label for f in out}:
                out.append(node.field)
        elif isinstance(node, BoolOp):
            for it in node.items:
                walk(it)
        elif isinstance(node, Not):
            walk(node.item)

    if tree is not None:
        walk(tree)
    return out


# --- compiling ----------------------------------------------------------------------------------

_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_LOOKUPS = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
# A JSON string that holds a number (MLflow params are strings): at most 60 characters and a
# 3-digit exponent, so that a cast can never fail (PostgreSQL's numeric takes up to 1e131071).
_NUMERIC_STRING = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$"


def _like_pattern(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join("." + json.dumps(seg) for seg in path)


class ConfigCompare(Func):
    """`config.<path> <op> <literal>` as one boolean SQL expression, never NULL (a comparison is
    false where the value is absent or of another JSON type). Every user-given part (the path, the
    value) is a query parameter; `op` comes from a fixed table."""

    output_field = BooleanField()

    def __init__(self, path: tuple[str, ...], op: str, value):
        super().__init__(F("config"))
        self.path, self.op, self.value = tuple(path), op, value

    def as_sql(self, compiler, connection, **extra):
        col, col_params = compiler.compile(self.get_source_expressions()[0])
        assert not col_params
        value, op = self.value, self.op
        if connection.vendor == "postgresql":
            node, text_of = f"({col} #> %s::text[])", f"({col} #>> %s::text[])"
            path = list(self.path)
            if isinstance(value, bool):
                return (f"(CASE WHEN jsonb_typeof({node}) = 'boolean' THEN {node} {_SQL_OPS[op]} %s::jsonb ELSE false END)",
                        [path, path, "true" if value else "false"])
            if isinstance(value, float):
                num = repr(value)
                return (f"(CASE jsonb_typeof({node}) WHEN 'number' THEN ({node})::numeric {_SQL_OPS[op]} %s::numeric "
                        f"WHEN 'string' THEN (CASE WHEN length({text_of}) <= 60 AND {text_of} ~ %s "
                        f"THEN ({text_of})::numeric {_SQL_OPS[op]} %s::numeric ELSE false END) ELSE false END)",
                        [path, path, num, path, path, _NUMERIC_STRING, path, num])
            if op == "~":
                return (f"(CASE WHEN jsonb_typeof({node}) = 'string' THEN {text_of} ILIKE %s ESCAPE '\\' ELSE false END)",
                        [path, path, _like_pattern(value)])
            return (f"(CASE WHEN jsonb_typeof({node}) = 'string' THEN {text_of} {_SQL_OPS[op]} %s ELSE false END)",
                    [path, path, value])
        # SQLite (embedded): JSON1's json_type / json_extract on the same path
        path = _sqlite_path(self.path)
        typ, val = f"json_type({col}, %s)", f"json_extract({col}, %s)"
        if isinstance(value, bool):
            return (f"(CASE WHEN {typ} IN ('true', 'false') THEN {typ} {_SQL_OPS[op]} %s ELSE 0 END)",
                    [path, path, "true" if value else "false"])
        if isinstance(value, float):
            return (f"(CASE WHEN {typ} IN ('integer', 'real') THEN {val} {_SQL_OPS[op]} %s "
                    f"WHEN {typ} = 'text' AND length({val}) <= 60 AND {val} REGEXP %s "
                    f"THEN CAST(trim({val}) AS REAL) {_SQL_OPS[op]} %s ELSE 0 END)",
                    [path, path, value, path, path, path, _NUMERIC_STRING, path, value])
        if op == "~":
            return f"(CASE WHEN {typ} = 'text' THEN {val} LIKE %s ESCAPE '\\' ELSE 0 END)", [path, path, _like_pattern(value)]
        return f"(CASE WHEN {typ} = 'text' THEN {val} {_SQL_OPS[op]} %s ELSE 0 END)", [path, path, value]


class ConfigSortKey(Func):
    """A config value to order runs by, the same on both databases: `number` is its numeric value
    (a JSON number or a numeric string, as comparisons read them), `text` its text; NULL where
    absent. Runs sort by the number, then the text, NULLs last."""

    def __init__(self, path: tuple[str, ...], kind: str):
        from django.db.models import FloatField, TextField

        super().__init__(F("config"), output_field=FloatField() if kind == "number" else TextField())
        self.path, self.kind = tuple(path), kind

    def as_sql(self, compiler, connection, **extra):
        col, _ = compiler.compile(self.get_source_expressions()[0])
        if connection.vendor == "postgresql":
            node, text_of, path = f"({col} #> %s::text[])", f"({col} #>> %s::text[])", list(self.path)
            if self.kind == "text":
                return f'({text_of} COLLATE "C")', [path]  # byte order, as SQLite's: the same list on both
            return (f"(CASE jsonb_typeof({node}) WHEN 'number' THEN ({node})::numeric "
                    f"WHEN 'string' THEN (CASE WHEN length({text_of}) <= 60 AND {text_of} ~ %s "
                    f"THEN ({text_of})::numeric END) END)", [path, path, path, path, _NUMERIC_STRING, path])
        path = _sqlite_path(self.path)
        typ, val = f"json_type({col}, %s)", f"json_extract({col}, %s)"
        if self.kind == "text":
            return f"CAST({val} AS TEXT)", [path]
        return (f"(CASE WHEN {typ} IN ('integer', 'real') THEN {val} "
                f"WHEN {typ} = 'text' AND length({val}) <= 60 AND {val} REGEXP %s THEN CAST(trim({val}) AS REAL) END)",
                [path, path, path, path, path, _NUMERIC_STRING, path])


def _stale_q() -> Q:
    cutoff = timezone.now() - timedelta(seconds=settings.R1LAB_STALE_AFTER_S)
    return Q(status="running") & (Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True, created_at__lt=cutoff))


def _series_model():
    from r1lab.tracking.models import Series

    return Series


def _compare_metric(field: Field, op: str, value: float) -> Q:
    col = AGGREGATES[field.agg]
    cond = Q(**{f"{col}__isnull": False}) & ~Q(**{col: value}) if op == "!=" else Q(**{f"{col}__{_LOOKUPS[op]}": value})
    return Q(Exists(_series_model().objects.filter(cond, run_id=OuterRef("pk"), key=field.name)))


def _compare_run_field(field: Field, op: str, value) -> Q:
    name = field.name
    if name == "created_at":
        start, end = _date_range(value, field.col, "")
        q = {"=": Q(created_at__gte=start, created_at__lt=end), "<": Q(created_at__lt=start),
             "<=": Q(created_at__lt=end), ">": Q(created_at__gte=end), ">=": Q(created_at__gte=start)}
        return ~q["="] if op == "!=" else q[op]
    if name == "status":
        v = value.lower()
        q = _stale_q() if v == "stale" else (Q(status=v) & ~_stale_q() if v == "running" else Q(status=v))
        return ~q if op == "!=" else q
    if op == "~":
        return Q(**{f"{name}__icontains": value})
    return ~Q(**{name: value}) if op == "!=" else Q(**{name: value})


def compile_q(tree) -> Q:
    """The tree as a Q over tracking.Run (an empty Q for no query)."""
    if tree is None:
        return Q()
    if isinstance(tree, BoolOp):
        out = compile_q(tree.items[0])
        for it in tree.items[1:]:
            out = (out & compile_q(it)) if tree.op == "and" else (out | compile_q(it))
        return out
    if isinstance(tree, Not):
        return ~compile_q(tree.item)
    field = tree.field
    if field.kind == "metric":
        return _compare_metric(field, tree.op, tree.value)
    if field.kind == "config":
        return Q(ConfigCompare(field.path, tree.op, tree.value))
    return _compare_run_field(field, tree.op, tree.value)


def sort_expressions(field: Field) -> list:
    """The expressions to order runs by a field, first to last."""
    if field.kind == "run":
        return [F(field.name)]
    if field.kind == "config":
        return [ConfigSortKey(field.path, "number"), ConfigSortKey(field.path, "text")]
    return [Subquery(_series_model().objects.filter(run_id=OuterRef("pk"), key=field.name)
                     .values(AGGREGATES[field.agg])[:1])]


def config_value(config, path: tuple[str, ...]):
    """The value at a dotted path of a run's config, or None."""
    node = config
    for seg in path:
        if not isinstance(node, dict) or seg not in node:
            return None
        node = node[seg]
    return node
