"""Reads of the MLflow tracking protocol: experiments, runs as MLflow's Run messages, search, and
metric history, from the same tables the run pages read (runs, series, points)."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import orjson
from django.db import connection
from django.db.models import F, Max, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from r1lab.tracking.mlflow_protocol import (
    MAX_INT64, NOTE_TAG, RUN_NAME_TAG, STATUS_FROM_R1LAB, STATUS_TO_R1LAB, Clause, like_to_regex,
)
from r1lab.tracking.models import MlflowExperiment, Point, Run, Series
from r1lab.tracking.selectors import runs_visible

DEFAULT_PROJECT = "default"  # experiment "0", MLflow's `Default`


def project_of_name(name: str) -> str:
    """MLflow's default experiment is called `Default`; r1lab's default project `default`."""
    return DEFAULT_PROJECT if name in ("Default", DEFAULT_PROJECT) else name


def project_exists(*, project: str) -> bool:
    return (project == DEFAULT_PROJECT or MlflowExperiment.objects.filter(name=project).exists()
            or Run.objects.filter(project=project).exists())


def project_of_experiment(*, experiment_id: int) -> str | None:
    if experiment_id == 0:
        return DEFAULT_PROJECT
    return MlflowExperiment.objects.filter(pk=experiment_id).values_list("name", flat=True).first()


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


MAX_TS_MS = 2**53 - 1  # timestamps past it (a wall time of 1e300 s is finite) are clamped


def ts_ms(ts: float) -> int:
    """A point's wall time (seconds) as MLflow's timestamp (integer milliseconds, clamped)."""
    return int(round(min(max(ts * 1000.0, 0.0), MAX_TS_MS)))


def experiment_payload(*, experiment_id: int, project: str) -> dict:
    """MLflow's Experiment message."""
    row = None if experiment_id == 0 else MlflowExperiment.objects.filter(pk=experiment_id).first()
    created = _ms(row.created_at) if row else 0
    last_run = Run.objects.filter(project=project).aggregate(t=Max("created_at"))["t"]
    out = {
        "experiment_id": str(experiment_id),
        "name": "Default" if experiment_id == 0 else project,
        "artifact_location": f"mlflow-artifacts:/{experiment_id}",
        "lifecycle_stage": "active",
        "creation_time": created,
        "last_update_time": max(created, _ms(last_run) or 0),
        "tags": [{"key": k, "value": v} for k, v in (row.tags if row else {}).items()],
    }
    return out


def param_str(value) -> str:
    """A config value as an MLflow param: strings as they are, anything else as Python's str()
    (what the MLflow client sends for `log_param(key, value)`)."""
    return value if isinstance(value, str) else str(value)


def run_info(run: Run, experiment_id: int) -> dict:
    """MLflow's RunInfo message. start_time/end_time are r1lab's creation and finish times."""
    info = {
        "run_id": str(run.pk), "run_uuid": str(run.pk), "run_name": run.name,
        "experiment_id": str(experiment_id),
        "user_id": run.created_by.username if run.created_by_id and run.created_by else "",
        "status": STATUS_FROM_R1LAB.get(run.display_status, "RUNNING"),
        "start_time": _ms(run.created_at),
        "artifact_uri": f"mlflow-artifacts:/{experiment_id}/{run.pk}/artifacts",
        "lifecycle_stage": "active",
    }
    if run.finished_at is not None:
        info["end_time"] = _ms(run.finished_at)
    return info


def latest_metrics(*, run_ids: list[int]) -> dict[int, list[dict]]:
    """The last value (at the highest step) of every metric of each run, as MLflow Metric messages."""
    out: dict[int, list[dict]] = {rid: [] for rid in run_ids}
    if not run_ids:
        return out
    # each series' highest step: its summary, kept by ingest (Series.last_step)
    last = list(Series.objects.filter(run_id__in=run_ids, last_step__isnull=False)
                .values_list("id", "run_id", "key", "last_step"))
    if not last:
        return out
    by_sid = {sid: (rid, key) for sid, rid, key, _ in last}
    with connection.cursor() as cur:
        for i in range(0, len(last), 1000):
            chunk = last[i:i + 1000]
            marks = ",".join(["(%s, %s)"] * len(chunk))
            cur.execute(f"SELECT series_id, step, value, ts FROM tracking_point WHERE (series_id, step) IN ({marks})",
                        [x for sid, _, _, step in chunk for x in (sid, step)])
            for sid, step, value, ts in cur.fetchall():
                rid, key = by_sid[sid]
                out[rid].append({"key": key, "value": value, "timestamp": ts_ms(ts), "step": step})
    for metrics in out.values():
        metrics.sort(key=lambda m: m["key"])
    return out


def run_payloads(*, runs: list[Run], experiment_ids: dict[str, int]) -> list[dict]:
    """MLflow Run messages {info, data: {metrics, params, tags}, inputs}."""
    metrics = latest_metrics(run_ids=[r.pk for r in runs])
    out = []
    for run in runs:
        tags = {k: param_str(v) for k, v in (run.tags or {}).items()}
        tags[RUN_NAME_TAG] = run.name
        if run.notes and NOTE_TAG not in tags:
            tags[NOTE_TAG] = run.notes
        out.append({
            "info": run_info(run, experiment_ids[run.project]),
            "data": {
                "metrics": metrics[run.pk],
                "params": [{"key": k, "value": param_str(v)} for k, v in (run.config or {}).items()],
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
            "inputs": {},
        })
    return out


_LEAN_RUN_FIELDS = ("id", "external", "status", "name", "project")  # what a write needs of its run


def run_for(*, user, run_id: int, lean: bool = False) -> Run | None:
    """The run if the user may see it. `lean`: only what a write needs (no join, no ordering: the
    lookup is on every log call)."""
    visible = runs_visible(user=user)
    if lean and not visible.query.where:
        # the user sees every run (no filter to apply): one raw lookup, without the ORM's query
        # building, which cost as much as the round trip on every log call
        return next(iter(Run.objects.raw(
            f"SELECT {', '.join(_LEAN_RUN_FIELDS)} FROM {Run._meta.db_table} WHERE id = %s", [run_id])), None)
    qs = visible.filter(pk=run_id)
    if lean:
        qs = qs.select_related(None).order_by().only(*_LEAN_RUN_FIELDS)
    return qs.first()


# --- search ---------------------------------------------------------------------------------------------

_ATTR_FIELDS = {"status": "status", "run_name": "name", "run_id": "id", "start_time": "created_at",
                "created": "created_at", "end_time": "finished_at", "user_id": "created_by__username"}


def _from_ms(v: float) -> datetime:
    v = min(max(v, 0.0), 253402300799000.0)  # 9999-12-31: a datetime past it overflows
    return datetime.fromtimestamp(v / 1000.0, tz=dt_timezone.utc)


def _json_text(key: str, field: str):
    """A key of a JSON column as text (params, tags): compared as text on every database (a bare
    KeyTextTransform compares as JSON on SQLite, where '0.1' would equal the number 0.1)."""
    return Cast(KeyTextTransform(key, field), TextField())


def _latest_value(key: str):
    return Subquery(Point.objects.filter(series__run_id=OuterRef("pk"), series__key=key)
                    .order_by("-step").values("value")[:1])


def _string_q(field: str, op: str, value) -> Q:
    if op == "=":
        return Q(**{field: value})
    if op == "!=":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{field: value})
    if op == "LIKE":
        return Q(**{f"{field}__regex": like_to_regex(value)})
    if op == "ILIKE":
        return Q(**{f"{field}__iregex": like_to_regex(value)})
    if op == "IN":
        return Q(**{f"{field}__in": value})
    return Q(**{f"{field}__isnull": False}) & ~Q(**{f"{field}__in": value})  # NOT IN


def _number_q(field: str, op: str, value) -> Q:
    if op == "!=":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{field: value})
    lookup = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
    return Q(**{f"{field}__{lookup}": value})


def _status_values(v) -> list[str]:
    out = []
    for name in v if isinstance(v, list) else [v]:
        out.append(STATUS_TO_R1LAB[name])
        if name == "FAILED":
            out.append(Run.Status.CRASHED)
    return out


def _run_ids(v) -> list[int]:
    return [int(x) for x in (v if isinstance(v, list) else [v]) if x.isascii() and x.isdigit() and int(x) <= MAX_INT64]


def _apply(qs: QuerySet, clauses: list[Clause], order: list[tuple[str, str, bool]]) -> QuerySet:
    for i, c in enumerate(clauses):
        if c.kind == "attributes" or (c.kind == "tags" and c.key == RUN_NAME_TAG):
            key = "run_name" if c.kind == "tags" else c.key
            field = _ATTR_FIELDS[key]
            if key == "status":
                values = _status_values(c.value)
                qs = qs.filter(status__in=values) if c.op in ("=", "IN") else qs.exclude(status__in=values)
            elif key == "run_id":
                ids = _run_ids(c.value)
                qs = qs.filter(pk__in=ids) if c.op in ("=", "IN") else qs.exclude(pk__in=ids)
            elif key in ("start_time", "created", "end_time"):
                qs = qs.filter(_number_q(field, c.op, _from_ms(c.value)))
            else:
                qs = qs.filter(_string_q(field, c.op, c.value))
        elif c.kind in ("params", "tags"):
            alias = f"_f{i}"
            qs = qs.annotate(**{alias: _json_text(c.key, "config" if c.kind == "params" else "tags")})
            qs = qs.filter(_string_q(alias, c.op, c.value))
        else:  # metrics: the latest value, as MLflow compares
            alias = f"_f{i}"
            qs = qs.annotate(**{alias: _latest_value(c.key)}).filter(_number_q(alias, c.op, c.value))
    ordering = []
    for j, (kind, key, desc) in enumerate(order):
        if kind == "attributes" or (kind == "tags" and key == RUN_NAME_TAG):
            expr = F(_ATTR_FIELDS["run_name" if kind == "tags" else key])
        elif kind in ("params", "tags"):
            alias = f"_o{j}"
            qs = qs.annotate(**{alias: _json_text(key, "config" if kind == "params" else "tags")})
            expr = F(alias)
        else:
            alias = f"_o{j}"
            qs = qs.annotate(**{alias: _latest_value(key)})
            expr = F(alias)
        ordering.append(expr.desc(nulls_last=True) if desc else expr.asc(nulls_last=True))
    return qs.order_by(*ordering, F("created_at").desc(), "id")


def runs_search(*, user, projects: list[str], clauses: list[Clause], order: list[tuple[str, str, bool]],
                offset: int, limit: int) -> tuple[list[Run], bool]:
    """One page of the runs of these projects that match every clause; (runs, more pages follow)."""
    if not projects:
        return [], False
    qs = _apply(runs_visible(user=user).filter(project__in=projects), clauses, order)
    page = list(qs[offset:offset + limit + 1])
    return page[:limit], len(page) > limit


# --- metric history -----------------------------------------------------------------------------------


def metric_history_json(*, run_id: int, key: str, first_step: int, limit: int) -> tuple[bytes, int | None]:
    """A metric's points from `first_step` on, in step order, at most `limit`, as the JSON array
    of MLflow Metric messages; and the first step of the next page (None: no more).

    One value per step (r1lab keeps the first value logged at a step). On PostgreSQL the JSON is
    built by the database in one aggregate (no Python object per point: a 100k-point history is
    answered in a small fraction of what building it row by row costs)."""
    sid = Series.objects.filter(run_id=run_id, key=key).values_list("id", flat=True).first()
    if sid is None:
        return b"[]", None
    key_json = orjson.dumps(key).decode()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT '[' || coalesce(string_agg(concat('{\"key\":', %s::text, ',\"value\":', value::text, "
                "',\"timestamp\":', round(least(greatest(ts * 1000, 0), %s))::bigint, ',\"step\":', step, '}'), "
                "',' ORDER BY step), '') || ']', count(*), max(step) "
                "FROM (SELECT step, value, ts FROM tracking_point WHERE series_id = %s AND step >= %s "
                "ORDER BY step LIMIT %s) p",
                [key_json, MAX_TS_MS, sid, first_step, limit])
            text, n, last = cur.fetchone()
            body = text.encode()
        else:
            cur.execute("SELECT step, value, ts FROM tracking_point WHERE series_id = %s AND step >= %s "
                        "ORDER BY step LIMIT %s", [sid, first_step, limit])
            rows = cur.fetchall()
            n, last = len(rows), (rows[-1][0] if rows else None)
            body = orjson.dumps([{"key": key, "value": v, "timestamp": ts_ms(ts), "step": s} for s, v, ts in rows])
        if n < limit:
            return body, None
        cur.execute("SELECT min(step) FROM tracking_point WHERE series_id = %s AND step > %s", [sid, last])
        return body, cur.fetchone()[0]
