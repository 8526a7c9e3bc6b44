"""The MLflow tracking protocol's request bodies, validated: ORM-free, all or nothing, and every
rejection an `MlflowError` in MLflow's own error format that names the item (`metrics[3].value`).

The shapes are those of `mlflow/protos/service.proto` as the real client sends them (protobuf JSON
with the proto field names, int64 as numbers, a double that is not finite as the string "NaN",
"Infinity" or "-Infinity"). Fields this server does not use (`model_id`, `dataset_name`, …) are
ignored, as a protobuf parser ignores unknown fields.

Where r1lab departs from MLflow's own server, on purpose:
- names are at most 200 characters (r1lab's metric keys, run names) and experiment names at most
  100 (r1lab's project names); MLflow's own limits are 250 and 500;
- steps are 0 … 2**62 (MLflow allows negative steps);
- a metric value that is not finite is not stored (the rest of the batch is): r1lab's store and
  charts hold finite numbers only, as r1lab_client drops them too. Refusing the batch would make
  the client raise in the middle of training when a loss or a grad norm turns NaN;
- names may hold any character but NUL, which PostgreSQL cannot store (MLflow allows a narrower set).
"""
from __future__ import annotations

import base64
import math
import re
import time
from dataclasses import dataclass, field

import orjson

from r1lab.tracking.ingest import MAX_KEY_LEN, MAX_STEP, ParsedLog

# MLflow's own batch limits (mlflow/utils/validation.py), which its client respects.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_PROJECT_LEN = 100  # Run.project, MlflowExperiment.name
MAX_RUN_NAME_LEN = 200  # Run.name
MAX_INT64 = 2**63 - 1
MAX_TIMESTAMP_MS = 2**53 - 1  # exact as a double (r1lab keeps wall time in seconds): year 287,000
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS = 50000
HISTORY_MAX_RESULTS = 1_000_000

RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
NUL = "\x00"
NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})

# MLflow RunStatus ↔ r1lab Run.Status. An r1lab run that crashed reads as FAILED; SCHEDULED (a
# status r1lab runs never have) is taken as RUNNING.
STATUS_TO_R1LAB = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "succeeded", "FAILED": "failed",
                   "KILLED": "cancelled"}
STATUS_FROM_R1LAB = {"running": "RUNNING", "stale": "RUNNING", "succeeded": "FINISHED", "failed": "FAILED",
                     "crashed": "FAILED", "cancelled": "KILLED"}
RUN_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
VIEW_TYPES = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3, 1: 1, 2: 2, 3: 3}  # name or number


def view_type(v) -> int:
    """`run_view_type` → 1 (ACTIVE_ONLY, the default), 2 (DELETED_ONLY) or 3 (ALL)."""
    if v is None:
        return 1
    if type(v) not in (str, int) or v not in VIEW_TYPES:
        raise bad("run_view_type", "must be ACTIVE_ONLY, DELETED_ONLY or ALL", v)
    return VIEW_TYPES[v]

# error_code → HTTP status, as MLflow's server answers them (mlflow/exceptions.py).
INVALID = "INVALID_PARAMETER_VALUE"
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
EXISTS = "RESOURCE_ALREADY_EXISTS"
STATUS_OF = {INVALID: 400, "BAD_REQUEST": 400, EXISTS: 400, NOT_FOUND: 404, "ENDPOINT_NOT_FOUND": 404,
             "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "NOT_IMPLEMENTED": 501}


class MlflowError(Exception):
    """An MLflow error answer: `{"error_code": code, "message": message}` with `status`."""

    def __init__(self, code: str, message: str, status: int | None = None):
        self.code = code
        self.message = message
        self.status = status or STATUS_OF.get(code, 400)
        super().__init__(message)


def _shown(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def bad(where: str, what: str, got=None) -> MlflowError:
    suffix = "" if got is None else f" (got {_shown(got)})"
    return MlflowError(INVALID, f"{where}: {what}{suffix}")


def parse_body(body: bytes) -> dict:
    """A POST body: a JSON object (empty body: {})."""
    if not body:
        return {}
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MlflowError(INVALID, f"body is not valid JSON: {exc}") from None
    if type(payload) is not dict:
        raise MlflowError(INVALID, "body must be a JSON object")
    return payload


def query_dict(params) -> dict:
    """A GET request's query parameters (the client sends the request message there)."""
    return {k: params.get(k) for k in params}


# --- scalars ------------------------------------------------------------------------------------------


def string(payload: dict, name: str, *, required: bool = False, max_len: int | None = None,
           default: str | None = None) -> str | None:
    v = payload.get(name)
    if v is None:
        if required:
            raise MlflowError(INVALID, f"Missing value for required parameter '{name}'.")
        return default
    if type(v) is not str:
        raise bad(name, "must be a string", v)
    if NUL in v:
        raise bad(name, "must not contain NUL (\\u0000) characters", v)
    if max_len is not None and len(v) > max_len:
        raise MlflowError(INVALID, f"'{name}' exceeds the maximum length of {max_len} characters ({len(v)})")
    return v


def int64(where: str, v, *, lo: int = 0, hi: int = MAX_INT64) -> int:
    """An int64 field: a JSON integer or a decimal string (protobuf JSON allows both)."""
    t = type(v)
    if t is str and re.fullmatch(r"-?\d{1,19}", v):
        v = int(v)
    elif t is not int:
        raise bad(where, "must be an integer", v)
    if not lo <= v <= hi:
        raise bad(where, f"must be an integer from {lo} to {hi}", v)
    return v


def run_id(payload: dict) -> int:
    """`run_id` (or the older `run_uuid`): r1lab run ids are integers, sent as strings."""
    raw = payload.get("run_id") or payload.get("run_uuid")
    if raw is None or raw == "":
        raise MlflowError(INVALID, "Missing value for required parameter 'run_id'.")
    if type(raw) is int and not isinstance(raw, bool):
        raw = str(raw)
    if type(raw) is not str or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MlflowError(NOT_FOUND, f"Run with id={_shown(raw)} not found (r1lab run ids are integers)")
    return int(raw)


def experiment_id(raw, where: str = "experiment_id") -> int:
    """An experiment id: "0" (the default experiment) or a positive integer, sent as a string."""
    if raw is None or raw == "":
        raise MlflowError(INVALID, f"Missing value for required parameter '{where}'.")
    if type(raw) is int and not isinstance(raw, bool):
        raw = str(raw)
    if type(raw) is not str or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MlflowError(NOT_FOUND, f"No Experiment with id={_shown(raw)} exists")
    return int(raw)


def experiment_name(payload: dict, name: str) -> str:
    v = string(payload, name, required=True)
    if not v.strip():
        raise MlflowError(INVALID, f"Invalid experiment name: {v!r}")
    if len(v) > MAX_PROJECT_LEN:
        raise MlflowError(INVALID, f"'{name}' exceeds the maximum length of {MAX_PROJECT_LEN} characters "
                                   f"(an r1lab project name; got {len(v)})")
    return v


def run_status(v) -> str:
    """A RunStatus (name or number) → r1lab's status."""
    if type(v) is int:
        v = RUN_STATUS_NUMBERS.get(v, v)
    if type(v) is not str or v not in STATUS_TO_R1LAB:
        raise bad("status", f"must be one of {', '.join(STATUS_TO_R1LAB)}", v)
    return STATUS_TO_R1LAB[v]


# --- metrics, params, tags ------------------------------------------------------------------------------


@dataclass
class Batch:
    """A validated log-batch (or log-metric / log-parameter / set-tag) request."""

    metrics: ParsedLog = field(default_factory=ParsedLog)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    skipped_non_finite: int = 0


def _name(where: str, key) -> str:
    if type(key) is not str or not key:
        raise bad(where, "must be a non-empty string", key)
    if NUL in key:
        raise bad(where, "must not contain NUL (\\u0000) characters", key)
    return key


def parse_metrics(items, out: Batch, *, now_ms: int | None = None, where: str = "metrics") -> None:
    """MLflow Metric objects {key, value, timestamp (ms), step} → out.metrics; a value that is not
    finite is counted in out.skipped_non_finite and not stored."""
    if type(items) is not list:
        raise bad(where, "must be a list", items)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    parsed = out.metrics
    ka, sa, va, ta = parsed.keys.append, parsed.steps.append, parsed.values.append, parsed.tss.append
    valid_keys: set[str] = set()
    isfinite = math.isfinite
    for i, m in enumerate(items):
        if type(m) is not dict:
            raise bad(f"{where}[{i}]", "must be an object {key, value, timestamp, step}", m)
        key = m.get("key")
        if type(key) is not str or key not in valid_keys:
            _name(f"{where}[{i}].key", key)
            if len(key) > MAX_KEY_LEN:
                raise MlflowError(INVALID, f"{where}[{i}].key: longer than {MAX_KEY_LEN} characters, r1lab's limit "
                                           f"for a metric name ({len(key)})")
            valid_keys.add(key)
        value = m.get("value")
        tv = type(value)
        if tv is float:
            finite = isfinite(value)
        elif tv is int:
            value = float(value)
            finite = isfinite(value)  # an int past 1.8e308 becomes inf
        elif tv is str and value in NON_FINITE:
            finite = False
        elif value is None:
            raise MlflowError(INVALID, f"Missing value for required parameter '{where}[{i}].value'.")
        else:
            raise bad(f"{where}[{i}].value", "must be a number (a double)", value)
        step = m.get("step", 0)
        if type(step) is not int or step < 0 or step > MAX_STEP:
            step = int64(f"{where}[{i}].step", 0 if step is None else step, hi=MAX_STEP)
        ts = m.get("timestamp")
        if ts is None:
            ts = now_ms
        elif type(ts) is not int or ts < 0 or ts > MAX_TIMESTAMP_MS:
            ts = int64(f"{where}[{i}].timestamp", ts, hi=MAX_TIMESTAMP_MS)
        if not finite:
            out.skipped_non_finite += 1
            continue
        ka(key); sa(step); va(value); ta(ts / 1000.0)  # noqa: E702


def parse_params(items, out: Batch, *, where: str = "params") -> None:
    if type(items) is not list:
        raise bad(where, "must be a list", items)
    for i, p in enumerate(items):
        if type(p) is not dict:
            raise bad(f"{where}[{i}]", "must be an object {key, value}", p)
        key = _name(f"{where}[{i}].key", p.get("key"))
        if len(key) > MAX_ENTITY_KEY_LENGTH:
            raise MlflowError(INVALID, f"{where}[{i}].key: exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters")
        value = p.get("value")
        value = "" if value is None else value
        if type(value) is not str:
            raise bad(f"{where}[{i}].value", "must be a string", value)
        if NUL in value:
            raise bad(f"{where}[{i}].value", "must not contain NUL (\\u0000) characters", value)
        if len(value) > MAX_PARAM_VAL_LENGTH:
            raise MlflowError(INVALID, f"{where}[{i}].value: exceeds the maximum length of {MAX_PARAM_VAL_LENGTH} characters")
        if key in out.params:
            raise MlflowError(INVALID, f"Duplicate parameter keys have been submitted: [{key!r}]. Please ensure "
                                       "the request contains only one param value per param key.")
        out.params[key] = value


def parse_tags(items, out: Batch, *, where: str = "tags") -> None:
    if type(items) is not list:
        raise bad(where, "must be a list", items)
    for i, t in enumerate(items):
        if type(t) is not dict:
            raise bad(f"{where}[{i}]", "must be an object {key, value}", t)
        key = _name(f"{where}[{i}].key", t.get("key"))
        if len(key) > MAX_ENTITY_KEY_LENGTH:
            raise MlflowError(INVALID, f"{where}[{i}].key: exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters")
        value = t.get("value")
        value = "" if value is None else value
        if type(value) is not str:
            raise bad(f"{where}[{i}].value", "must be a string", value)
        if NUL in value:
            raise bad(f"{where}[{i}].value", "must not contain NUL (\\u0000) characters", value)
        limit = MAX_RUN_NAME_LEN if key == RUN_NAME_TAG else MAX_TAG_VAL_LENGTH
        if len(value) > limit:
            raise MlflowError(INVALID, f"{where}[{i}].value: exceeds the maximum length of {limit} characters")
        out.tags[key] = value


def parse_log_batch(payload: dict) -> Batch:
    """`runs/log-batch` {run_id, metrics, params, tags} within MLflow's batch limits."""
    metrics = payload.get("metrics") or []
    params = payload.get("params") or []
    tags = payload.get("tags") or []
    for name, items, limit in (("metrics", metrics, MAX_METRICS_PER_BATCH), ("params", params, MAX_PARAMS_TAGS_PER_BATCH),
                               ("tags", tags, MAX_PARAMS_TAGS_PER_BATCH)):
        if type(items) is not list:
            raise bad(name, "must be a list", items)
        if len(items) > limit:
            raise MlflowError(INVALID, f"A batch logging request can contain at most {limit} {name}. Got {len(items)} "
                                       f"{name}. Please split up {name} across multiple requests and try again.")
    total = len(metrics) + len(params) + len(tags)
    if total > MAX_ENTITIES_PER_BATCH:
        raise MlflowError(INVALID, f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, "
                                   f"params, and tags. Got {total}.")
    out = Batch()
    parse_metrics(metrics, out)
    parse_params(params, out)
    parse_tags(tags, out)
    return out


def parse_log_metric(payload: dict) -> Batch:
    """`runs/log-metric` {run_id, key, value, timestamp, step}: one metric."""
    out = Batch()
    parse_metrics([{k: payload.get(k) for k in ("key", "value", "timestamp", "step") if k in payload}], out,
                  where="metric")
    return out


def parse_log_param(payload: dict) -> Batch:
    out = Batch()
    parse_params([{"key": payload.get("key"), "value": payload.get("value")}], out, where="param")
    return out


def parse_set_tag(payload: dict) -> Batch:
    out = Batch()
    parse_tags([{"key": payload.get("key"), "value": payload.get("value")}], out, where="tag")
    return out


def parse_run_create(payload: dict) -> dict:
    """`runs/create` {experiment_id, run_name, start_time, tags, user_id} → {experiment_id, name, tags}."""
    exp = payload.get("experiment_id")
    exp_id = 0 if exp is None or exp == "" else experiment_id(exp)
    out = Batch()
    tags = payload.get("tags") or []
    if type(tags) is list and len(tags) > MAX_PARAMS_TAGS_PER_BATCH:
        raise MlflowError(INVALID, f"a run may be created with at most {MAX_PARAMS_TAGS_PER_BATCH} tags (got {len(tags)})")
    parse_tags(tags, out)
    name = string(payload, "run_name", max_len=MAX_RUN_NAME_LEN) or out.tags.get(RUN_NAME_TAG) or ""
    if payload.get("start_time") is not None:
        int64("start_time", payload["start_time"])
    return {"experiment_id": exp_id, "name": name.strip(), "tags": out.tags}


def parse_run_update(payload: dict) -> dict:
    """`runs/update` {run_id, status, end_time, run_name} → {status?, name?}."""
    out: dict = {}
    if payload.get("status") is not None:
        out["status"] = run_status(payload["status"])
    if payload.get("end_time") is not None:
        int64("end_time", payload["end_time"])
    name = string(payload, "run_name", max_len=MAX_RUN_NAME_LEN)
    if name is not None and name.strip():
        out["name"] = name.strip()
    return out


def parse_experiment_create(payload: dict) -> dict:
    name = experiment_name(payload, "name")
    out = Batch()
    parse_tags(payload.get("tags") or [], out)
    return {"name": name, "tags": out.tags}


def max_results(raw, *, default: int, limit: int) -> int:
    if raw is None or raw == "":
        return default
    return int64("max_results", raw, lo=1, hi=limit)


def page_token_decode(raw) -> int:
    """Our page tokens are base64 of {"n": n}: the offset of the next page (search) or the first
    step of the next page (metric history)."""
    if raw is None or raw == "":
        return -1
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw.encode() if type(raw) is str else b"!"))
        value = data["n"]
        if type(value) is not int or not 0 <= value <= MAX_INT64:
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError, UnicodeEncodeError):
        raise bad("page_token", "is not a token this server gave", raw) from None


def page_token_encode(n: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"n": n})).decode()


# --- search: MLflow's filter and order_by strings ---------------------------------------------------------

_PREFIXES = {
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags", "metric": "metrics", "metrics": "metrics",
}
ATTRIBUTES = {"status", "run_name", "run_id", "start_time", "end_time", "created", "user_id"}
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
     |(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
     |(?P<op>!=|<>|<=|>=|=|<|>)
     |(?P<lp>\()|(?P<rp>\))|(?P<comma>,)
     |(?P<ident>(?:`[^`]*`|[A-Za-z_][\w]*)(?:\.(?:`[^`]*`|"[^"]*"|[^\s=!<>(),]+))?)
    )""", re.VERBOSE)


@dataclass
class Clause:
    kind: str  # attributes | params | tags | metrics
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN
    value: object  # str | float | list[str]


def _unquote(tok: str) -> str:
    if tok[:1] in "'\"" and tok[-1:] == tok[:1] and len(tok) >= 2:
        body = tok[1:-1]
        return body.replace("''", "'") if tok[0] == "'" else body
    if tok[:1] == "`" and tok[-1:] == "`" and len(tok) >= 2:
        return tok[1:-1]
    return tok


def _tokens(s: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise MlflowError(INVALID, f"Invalid filter string at position {pos}: {_shown(s[pos:pos + 30])}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _entity(ident: str, where: str) -> tuple[str, str]:
    head, dot, rest = ident.partition(".")
    head = _unquote(head)
    if not dot:
        if head.lower() in ATTRIBUTES:
            return "attributes", head.lower()
        raise MlflowError(INVALID, f"{where}: invalid identifier {ident!r}: use attributes.<name>, params.<key>, "
                                   "tags.<key> or metrics.<key>")
    kind = _PREFIXES.get(head.lower())
    if kind is None:
        raise MlflowError(INVALID, f"{where}: invalid entity type {head!r}: expected attributes, params, tags or metrics")
    key = _unquote(rest)
    if kind == "attributes":
        if key.lower() not in ATTRIBUTES:
            raise MlflowError(INVALID, f"{where}: invalid attribute key {key!r}; supported: {', '.join(sorted(ATTRIBUTES))}")
        key = key.lower()
    if not key or NUL in key:
        raise MlflowError(INVALID, f"{where}: invalid key {key!r}")
    return kind, key


def parse_filter(s: str | None) -> list[Clause]:
    """`metrics.reward > 0.5 AND params.lr = '0.1' AND attributes.status IN ('RUNNING', 'FINISHED')` →
    clauses joined by AND (MLflow supports AND only)."""
    if not s or not s.strip():
        return []
    if NUL in s:
        raise MlflowError(INVALID, "filter: must not contain NUL (\\u0000) characters")
    toks = _tokens(s)
    clauses, i = [], 0
    while i < len(toks):
        kind, tok = toks[i]
        if kind != "ident":
            raise MlflowError(INVALID, f"Invalid filter string: expected an identifier, got {tok!r}")
        entity = _entity(tok, "filter")
        i += 1
        if i >= len(toks):
            raise MlflowError(INVALID, f"Invalid filter string: {tok!r} has no comparison")
        kind, tok = toks[i]
        if kind == "op":
            op = "!=" if tok == "<>" else tok
            i += 1
        elif kind == "ident" and tok.upper() in ("LIKE", "ILIKE", "IN"):
            op = tok.upper()
            i += 1
        elif kind == "ident" and tok.upper() == "NOT" and i + 1 < len(toks) and toks[i + 1][1].upper() == "IN":
            op = "NOT IN"
            i += 2
        else:
            raise MlflowError(INVALID, f"Invalid filter string: expected a comparator after {entity[0]}.{entity[1]}, got {tok!r}")
        if i >= len(toks):
            raise MlflowError(INVALID, f"Invalid filter string: no value after {op}")
        if op in ("IN", "NOT IN"):
            if toks[i][0] != "lp":
                raise MlflowError(INVALID, f"Invalid filter string: {op} takes a list in parentheses ('a', 'b')")
            i += 1
            values = []
            while i < len(toks) and toks[i][0] != "rp":
                kind, tok = toks[i]
                if kind != "str":
                    raise MlflowError(INVALID, f"Invalid filter string: {op} values must be quoted strings, got {tok!r}")
                values.append(_unquote(tok))
                i += 1
                if i < len(toks) and toks[i][0] == "comma":
                    i += 1
            if i >= len(toks) or not values:
                raise MlflowError(INVALID, f"Invalid filter string: {op} list is empty or not closed")
            i += 1
            value: object = values
        else:
            kind, tok = toks[i]
            if kind == "str":
                value = _unquote(tok)
            elif kind == "num":
                value = float(tok)
                if not math.isfinite(value):
                    raise MlflowError(INVALID, f"Invalid filter string: {tok!r} is not a finite number")
            else:
                raise MlflowError(INVALID, f"Invalid filter string: expected a value after {op}, got {tok!r}")
            i += 1
        clauses.append(_checked(Clause(entity[0], entity[1], op, value)))
        if i < len(toks):
            kind, tok = toks[i]
            if kind == "ident" and tok.upper() == "AND":
                i += 1
                if i >= len(toks):
                    raise MlflowError(INVALID, "Invalid filter string: nothing after AND")
            elif kind == "ident" and tok.upper() == "OR":
                raise MlflowError(INVALID, "Invalid filter string: OR is not supported (MLflow's search takes AND only)")
            else:
                raise MlflowError(INVALID, f"Invalid filter string: expected AND, got {tok!r}")
    return clauses


_NUMERIC_ATTRS = {"start_time", "end_time", "created"}
_STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}


def _checked(c: Clause) -> Clause:
    where = f"{c.kind}.{c.key}"
    if c.kind == "metrics" or (c.kind == "attributes" and c.key in _NUMERIC_ATTRS):
        if c.op not in ("=", "!=", "<", "<=", ">", ">=") or type(c.value) is not float:
            raise MlflowError(INVALID, f"Invalid filter: {where} compares numbers (=, !=, <, <=, >, >=) with a number")
    else:
        if c.op not in _STRING_OPS:
            raise MlflowError(INVALID, f"Invalid filter: {where} takes =, !=, LIKE, ILIKE, IN or NOT IN")
        if type(c.value) is float:
            raise MlflowError(INVALID, f"Invalid filter: {where} is a string: quote the value ('…')")
        if c.kind == "attributes" and c.key in ("status", "run_id"):
            if c.op in ("LIKE", "ILIKE"):
                raise MlflowError(INVALID, f"Invalid filter: {where} takes =, !=, IN or NOT IN")
        if c.kind == "attributes" and c.key == "status":
            for v in c.value if isinstance(c.value, list) else [c.value]:
                if v not in STATUS_TO_R1LAB:
                    raise MlflowError(INVALID, f"Invalid filter: status {v!r}; one of {', '.join(STATUS_TO_R1LAB)}")
    return c


def parse_order_by(items) -> list[tuple[str, str, bool]]:
    """["metrics.reward DESC", "start_time"] → [(kind, key, descending)]."""
    if items is None:
        return []
    if type(items) is str:
        items = [items]
    if type(items) is not list or len(items) > 10:
        raise bad("order_by", "must be a list of at most 10 strings", items)
    out = []
    for i, raw in enumerate(items):
        if type(raw) is not str or not raw.strip() or NUL in raw:
            raise bad(f"order_by[{i}]", "must be a non-empty string like 'attributes.start_time DESC'", raw)
        text = raw.strip()
        desc = False
        m = re.search(r"\s+(ASC|DESC)$", text, re.IGNORECASE)
        if m:
            desc = m.group(1).upper() == "DESC"
            text = text[:m.start()].rstrip()
        toks = _tokens(text)
        if len(toks) != 1 or toks[0][0] != "ident":
            raise bad(f"order_by[{i}]", "expected '<entity>.<key> [ASC|DESC]'", raw)
        kind, key = _entity(toks[0][1], f"order_by[{i}]")
        out.append((kind, key, desc))
    return out


def like_to_regex(pattern: str) -> str:
    """SQL LIKE (% any run, _ one character) → an anchored regular expression."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "^" + "".join(out) + "$"
