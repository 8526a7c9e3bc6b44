"""Validation of `POST /api/v1/runs/{id}/log` bodies: all or nothing, with a message that names
the offending item (`metrics[3].value: …`). Kept free of the ORM so it is cheap and testable.

The hot loop is written for speed (100k+ points/s through the API): local names, exact type
checks, no per-point objects.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import orjson

MAX_KEY_LEN = 200
MAX_TEXT_LEN = 1_000_000  # per prompt / completion
MAX_STEP = 2**62
MAX_INT32 = 2**31 - 1  # group, index, length are `integer` columns
# PostgreSQL cannot store U+0000 in text or jsonb. Names (metric keys, reward names, prompt ids,
# run names) are refused with a 400; model text is stored with each NUL replaced by U+2400 (␀),
# the field named in the sample's `extra["escaped_nul"]`, so what the model wrote stays visible.
NUL, NUL_SHOWN = "\x00", "\u2400"
_isfinite = math.isfinite

SAMPLE_FIELDS = {
    "step", "prompt", "completion", "rewards", "advantage", "group", "index", "prompt_id", "think", "answer",
    "length", "truncated", "reward", "language_consistency", "language_mixed",
}


class IngestError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class ParsedLog:
    keys: list[str] = field(default_factory=list)  # per point
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    tss: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)


def _bad(where: str, what: str, got) -> IngestError:
    shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return IngestError(400, f"{where}: {what} (got {shown})")


def _number(where: str, v) -> float:
    t = type(v)
    if t is float:
        if not _isfinite(v):
            raise _bad(where, "must be a finite number", v)
        return v
    if t is int:
        f = float(v)
        if not _isfinite(f):
            raise _bad(where, "must be a finite number", v)
        return f
    raise _bad(where, "must be a finite number", v)


def _step(where: str, v) -> int:
    if type(v) is not int:
        raise _bad(where, "must be an integer", v)
    if v < 0 or v > MAX_STEP:
        raise _bad(where, "must be a non-negative integer", v)
    return v


def parse_log_body(body: bytes, *, now: float | None = None) -> ParsedLog:
    try:
        payload = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"body is not valid JSON: {exc}") from None
    if type(payload) is not dict:
        raise IngestError(400, "body must be a JSON object with `metrics` and/or `samples`")
    unknown = set(payload) - {"metrics", "samples"}
    if unknown:
        raise IngestError(400, f"unknown field(s) {sorted(unknown)}: expected `metrics` and/or `samples`")
    metrics = payload.get("metrics") or []
    samples = payload.get("samples") or []
    if type(metrics) is not list:
        raise _bad("metrics", "must be a list", metrics)
    if type(samples) is not list:
        raise _bad("samples", "must be a list", samples)
    out = ParsedLog()
    now = time.time() if now is None else now
    keys, steps, values, tss = out.keys, out.steps, out.values, out.tss
    ka, sa, va, ta = keys.append, steps.append, values.append, tss.append
    valid_keys: set[str] = set()
    for i, m in enumerate(metrics):
        if type(m) is not dict:
            raise _bad(f"metrics[{i}]", "must be an object {step, key, value, ts?}", m)
        try:
            step = m["step"]
            key = m["key"]
            value = m["value"]
        except KeyError as exc:
            raise IngestError(400, f"metrics[{i}]: missing field {exc.args[0]!r}") from None
        if type(step) is not int or step < 0 or step > MAX_STEP:
            _step(f"metrics[{i}].step", step)
        if key not in valid_keys:
            if type(key) is not str or not key:
                raise _bad(f"metrics[{i}].key", "must be a non-empty string", key)
            if len(key) > MAX_KEY_LEN:
                raise IngestError(400, f"metrics[{i}].key: longer than {MAX_KEY_LEN} characters ({len(key)})")
            if NUL in key:
                raise _bad(f"metrics[{i}].key", "must not contain NUL (\\u0000) characters", key)
            valid_keys.add(key)
        tv = type(value)
        if tv is float:
            if not _isfinite(value):
                raise _bad(f"metrics[{i}].value", "must be a finite number", value)
        else:
            value = _number(f"metrics[{i}].value", value)
        ts = m.get("ts", now)
        if type(ts) is not float:
            ts = _number(f"metrics[{i}].ts", ts) if ts is not None else now
        elif not _isfinite(ts):
            raise _bad(f"metrics[{i}].ts", "must be a finite number", ts)
        if len(m) > 4:
            extra = set(m) - {"step", "key", "value", "ts"}
            if extra:
                raise IngestError(400, f"metrics[{i}]: unknown field(s) {sorted(extra)}")
        ka(key); sa(step); va(value); ta(ts)  # noqa: E702
    for i, s in enumerate(samples):
        out.samples.append(_sample(i, s))
    return out


def _name(where: str, v: str) -> str:
    """A name (key, reward name, prompt id): at most MAX_KEY_LEN characters, no NUL."""
    if len(v) > MAX_KEY_LEN:
        raise IngestError(400, f"{where}: longer than {MAX_KEY_LEN} characters")
    if NUL in v:
        raise _bad(where, "must not contain NUL (\\u0000) characters", v)
    return v


def _text(where: str, v, escaped: list[str]) -> str:
    """Model text: kept as written, except NUL (which PostgreSQL cannot store) shown as ␀."""
    if type(v) is not str:
        raise _bad(where, "must be a string", v)
    if len(v) > MAX_TEXT_LEN:
        raise IngestError(400, f"{where}: longer than {MAX_TEXT_LEN} characters")
    if NUL in v:
        escaped.append(where.rsplit(".", 1)[-1])
        v = v.replace(NUL, NUL_SHOWN)
    return v


def _json_value(v, escaped: list[bool]):
    """A trainer's extra JSON field, with NUL in any string or key shown as ␀ (jsonb refuses it)."""
    t = type(v)
    if t is str:
        if NUL in v:
            escaped[0] = True
            return v.replace(NUL, NUL_SHOWN)
        return v
    if t is dict:
        return {_json_value(k, escaped): _json_value(x, escaped) for k, x in v.items()}
    if t is list:
        return [_json_value(x, escaped) for x in v]
    return v


def _int32(where: str, v) -> int:
    v = _step(where, v)
    if v > MAX_INT32:
        raise _bad(where, f"must be at most {MAX_INT32}", v)
    return v


def _sample(i: int, s) -> dict:
    w = f"samples[{i}]"
    if type(s) is not dict:
        raise _bad(w, "must be an object {step, prompt, completion, rewards, …}", s)
    for name in ("step", "prompt", "completion", "rewards"):
        if name not in s:
            raise IngestError(400, f"{w}: missing field {name!r}")
    rewards = s["rewards"]
    if type(rewards) is not dict:
        raise _bad(f"{w}.rewards", "must be an object {name: number}", rewards)
    clean_rewards = {}
    for name, v in rewards.items():
        _name(f"{w}.rewards: name {name[:40]!r}", name)
        clean_rewards[name] = None if v is None else _number(f"{w}.rewards[{name!r}]", v)
    escaped: list[str] = []
    out = {
        "step": _step(f"{w}.step", s["step"]),
        "prompt": _text(f"{w}.prompt", s["prompt"], escaped),
        "completion": _text(f"{w}.completion", s["completion"], escaped),
        "rewards": clean_rewards,
        "think": _text(f"{w}.think", s["think"], escaped) if s.get("think") is not None else None,
        "answer": _text(f"{w}.answer", s["answer"], escaped) if s.get("answer") is not None else None,
    }
    for name in ("advantage", "reward", "language_consistency"):
        v = s.get(name)
        out[name] = None if v is None else _number(f"{w}.{name}", v)
    for name in ("group", "index", "length"):
        v = s.get(name)
        out[name] = None if v is None else _int32(f"{w}.{name}", v)
    for name in ("truncated", "language_mixed"):
        v = s.get(name)
        if v is not None and type(v) is not bool:
            raise _bad(f"{w}.{name}", "must be true or false", v)
        out[name] = v
    pid = s.get("prompt_id")
    if pid is not None:
        if type(pid) not in (str, int) or type(pid) is bool:
            raise _bad(f"{w}.prompt_id", "must be a string or an integer", pid)
        pid = _name(f"{w}.prompt_id", str(pid))
    out["prompt_id"] = pid or ""
    extra_escaped = [False]
    out["extra"] = {_json_value(k, extra_escaped): _json_value(v, extra_escaped)
                    for k, v in s.items() if k not in SAMPLE_FIELDS}
    if extra_escaped[0]:
        escaped.append("extra")
    if escaped:
        out["extra"]["escaped_nul"] = escaped
    return out


def nul_path(v, where: str) -> str | None:
    """Where in a JSON value the first NUL character is (`config.a[2]`), else None."""
    t = type(v)
    if t is str:
        return where if NUL in v else None
    if t is dict:
        for k, x in v.items():
            if NUL in k:
                return f"{where} (a key)"
            found = nul_path(x, f"{where}.{k}")
            if found:
                return found
    elif t is list:
        for i, x in enumerate(v):
            found = nul_path(x, f"{where}[{i}]")
            if found:
                return found
    return None


def parse_run_create(body: bytes) -> dict:
    """`POST /api/v1/runs` body → {name, project, config}; IngestError naming the bad field."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"body is not valid JSON: {exc}") from None
    if type(payload) is not dict:
        raise IngestError(400, "body must be a JSON object {name, project?, config?}")
    name, project, config = payload.get("name"), payload.get("project") or "default", payload.get("config") or {}
    if type(name) is not str or not name.strip():
        raise IngestError(400, "name: required, a non-empty string")
    if len(name) > 200:
        raise IngestError(400, "name: longer than 200 characters")
    if type(project) is not str or len(project) > 100:
        raise IngestError(400, "project: must be a string of at most 100 characters")
    if type(config) is not dict:
        raise IngestError(400, "config: must be a JSON object")
    for name_of, value in (("name", name), ("project", project), ("config", config)):
        where = nul_path(value, name_of)
        if where:
            raise IngestError(400, f"{where}: must not contain NUL (\\u0000) characters")
    return {"name": name.strip(), "project": project, "config": config}


def parse_rewind_body(body: bytes) -> int:
    """`POST /api/v1/runs/{id}/rewind` body `{"step": k}` → k (-1 … MAX_STEP)."""
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"body is not valid JSON: {exc}") from None
    if type(payload) is not dict or set(payload) != {"step"}:
        raise IngestError(400, 'body must be {"step": k}: the attempt continues after step k (-1: from the start)')
    step = payload["step"]
    if type(step) is not int or not -1 <= step <= MAX_STEP:
        raise _bad("step", f"must be an integer from -1 to {MAX_STEP}", step)
    return step


def parse_config_body(body: bytes) -> dict:
    """`POST /api/v1/runs/{id}/config` body `{"config": {...}}` → the keys to set (merged into the
    run's config, top-level keys replaced, like W&B's `config.update`)."""
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"body is not valid JSON: {exc}") from None
    if type(payload) is not dict or set(payload) != {"config"} or type(payload["config"]) is not dict:
        raise IngestError(400, 'body must be {"config": {...}}: the keys to set in the run\'s config')
    where = nul_path(payload["config"], "config")
    if where:
        raise IngestError(400, f"{where}: must not contain NUL (\\u0000) characters")
    return payload["config"]
