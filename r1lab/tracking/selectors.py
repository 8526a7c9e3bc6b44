"""Reads of the tracking app: runs a user may see, downsampled series, samples, comments, alarms."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, F, QuerySet, RowRange, Window

from r1lab.accounts.models import hash_token
from r1lab.accounts.permissions import can
from r1lab.tracking import curve_signals, run_query, store
from r1lab.tracking import panels as panel_rules
from r1lab.tracking.ingest import MAX_STEP
from r1lab.tracking.models import AlertSettings, Comment, Delivery, Point, Run, Series

DEFAULT_MAX_POINTS = 2000
# A run page's first paint: a panel's plot is at most ~500 px wide, so the min and max of ~500
# buckets keep every spike at pixel resolution; zooming fetches 2,000 points of the visible range.
PAGE_MAX_POINTS = 1000
MAX_MAX_POINTS = 20000


def runs_visible(*, user, project: str | None = None) -> QuerySet[Run]:
    """Every role with runs.view sees every run (the MATRIX has no per-run scoping yet)."""
    if not can(user, "runs.view"):
        return Run.objects.none()
    qs = Run.objects.select_related("created_by")
    if project:
        qs = qs.filter(project=project)
    return qs


# --- the runs list: a query, sort and columns (run_query.py) --------------------------------------

RUNS_PAGE_SIZE = 100
MAX_COLUMNS = 20
DEFAULT_COLUMNS = ("reward.last", "rewards/accuracy/mean.last")
DEFAULT_COLUMNS_TEXT = ", ".join(DEFAULT_COLUMNS)
DEFAULT_SORT = "-created"


@dataclass
class RunTable:
    """One page of the runs list: `rows` are (run, [value per column]); `columns` the chosen ones
    plus those the query and the sort read (`added`: not chosen, shown because they were)."""

    runs: list
    rows: list[tuple[Run, list]]
    columns: list[run_query.Field]
    added: set[str]
    sort: run_query.Field
    descending: bool
    total: int
    page: int
    pages: int


def _spec_error(param: str, exc: run_query.QueryError) -> run_query.QueryError:
    exc.param = param
    return exc


def parse_columns(raw: str) -> list[run_query.Field]:
    """`reward.last, config.lr` → fields (QueryError with `.param` "cols"); duplicates dropped."""
    out: list[run_query.Field] = []
    offset = 0
    for part in (raw or "").split(","):
        text = part.strip()
        col0 = offset + len(part) - len(part.lstrip()) + 1
        offset += len(part) + 1
        if not text:
            continue
        try:
            field = run_query.parse_field(text)
        except run_query.QueryError as exc:
            raise _spec_error("cols", run_query.QueryError(col0 + exc.column - 1, exc.message, raw)) from None
        if field.label not in {f.label for f in out}:
            out.append(field)
    if len(out) > MAX_COLUMNS:
        raise _spec_error("cols", run_query.QueryError(1, f"at most {MAX_COLUMNS} columns", raw))
    return out


def parse_sort(raw: str) -> tuple[run_query.Field, bool]:
    """`-reward.last` → (field, descending)."""
    text = (raw or DEFAULT_SORT).strip()
    desc = text.startswith("-")
    body = text[1:] if desc else text
    try:
        return run_query.parse_field(body), desc
    except run_query.QueryError as exc:
        raise _spec_error("sort", run_query.QueryError(exc.column + int(desc), exc.message, raw)) from None


def runs_find(*, user, query: str = "", sort: str = "", columns: str | None = None, project: str | None = None,
              page: int = 1) -> RunTable:
    """The runs list: the runs the user may see that match `query`, sorted, one page of them with
    the values of the chosen columns. QueryError (with `.param`: q, cols or sort) when a spec does
    not parse. Two queries for the page whatever the query (count, rows) and one for the metric
    columns: the filters read Series' summary columns, never points."""
    try:
        tree = run_query.parse(query)
    except run_query.QueryError as exc:
        raise _spec_error("q", exc) from None
    chosen = parse_columns(DEFAULT_COLUMNS_TEXT if columns is None else columns)
    sort_field, desc = parse_sort(sort)
    shown = [f for f in chosen if f.kind != "run"]
    added = set()
    for f in [*run_query.fields_of(tree), sort_field]:
        if f.kind != "run" and f.label not in {c.label for c in shown}:
            shown.append(f)
            added.add(f.label)
    qs = runs_visible(user=user, project=project).filter(run_query.compile_q(tree))
    keys = [k.desc(nulls_last=True) if desc else k.asc(nulls_last=True) for k in run_query.sort_expressions(sort_field)]
    # One pass finds the page's ids and the number of matches: a count over the whole result as a
    # window, ordered like the page so that the sort keys are computed as each run is read and the
    # rows sorted are narrow (an id and its keys; with the order only outside the window, every
    # matching run's whole row, config included, went through it). The runs are read for the page only.
    order = [*keys, F("created_at").desc(), F("id").desc()]
    page = max(1, page)
    ids_total = list(qs.select_related(None).order_by(*order)
                     .annotate(_total=Window(Count("id"), order_by=order, frame=RowRange(None, None)))
                     .values_list("id", "_total")[(page - 1) * RUNS_PAGE_SIZE: page * RUNS_PAGE_SIZE])
    total = ids_total[0][1] if ids_total else qs.count()
    pages = max(1, -(-total // RUNS_PAGE_SIZE))
    if not ids_total and total and page > pages:  # past the end: the last page
        return runs_find(user=user, query=query, sort=sort, columns=columns, project=project, page=pages)
    found = runs_visible(user=user).in_bulk([i for i, _ in ids_total])
    runs = [found[i] for i, _ in ids_total if i in found]
    metrics: dict[tuple[int, str], tuple] = {}
    keys = {f.name for f in shown if f.kind == "metric"}
    if runs and keys:
        for run_id, k, last, mn, mx in (Series.objects.filter(run_id__in=[r.pk for r in runs], key__in=keys)
                                        .values_list("run_id", "key", "last_value", "min_value", "max_value")):
            metrics[(run_id, k)] = {"last": last, "min": mn, "max": mx}
    rows = []
    for run in runs:
        values = []
        for f in shown:
            if f.kind == "metric":
                values.append((metrics.get((run.pk, f.name)) or {}).get(f.agg))
            else:
                values.append(run_query.config_value(run.config, f.path))
        rows.append((run, values))
    return RunTable(runs=runs, rows=rows, columns=shown, added=added, sort=sort_field, descending=desc,
                    total=total, page=page, pages=pages)


def run_for_token(*, raw: str) -> Run | None:
    """The run whose ingest token this is (tokens are stored hashed). Only the columns the ingest
    path reads: a run's config may be large and every logged batch looks its token up."""
    return Run.objects.filter(token_hash=hash_token(raw)).only("id", "status", "attempt").first()


def run_visible(*, user, run_id: int) -> Run | None:
    return runs_visible(user=user).filter(pk=run_id).first()


def run_projects(*, user) -> list[str]:
    return sorted(set(runs_visible(user=user).values_list("project", flat=True)))


def run_points(*, run: Run, keys: list[str] | None = None, min_step: int | None = None,
               max_step: int | None = None):
    """Every point of the run's series (of `keys`), not downsampled, as (key, step, value, ts) in
    series then step order, streamed from the database (the CSV download)."""
    series = Series.objects.filter(run=run)
    if keys:
        series = series.filter(key__in=keys)
    names = dict(series.values_list("id", "key"))
    points = Point.objects.filter(series_id__in=list(names)).order_by("series_id", "step")
    if min_step is not None:
        points = points.filter(step__gte=min_step)
    if max_step is not None:
        points = points.filter(step__lte=max_step)
    for sid, step, value, ts in points.values_list("series_id", "step", "value", "ts").iterator(chunk_size=5000):
        yield names[sid], step, value, ts


MAX_COMPARE_RUNS = 20
DEFAULT_COMPARE_METRICS = ["reward", "rewards/accuracy/mean", "completions/mean_length", "reflection/rate_per_1k_tokens"]
PALETTE = ["#2f5bd3", "#d9480f", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#e67700", "#5f3dc4", "#364fc7", "#087f5b",
           "#862e9c", "#a61e4d", "#5c940d", "#0b7285", "#d6336c", "#495057", "#f08c00", "#3b5bdb", "#099268", "#e8590c"]


def compare_data(*, user, run_ids: list[int], metrics: list[str] | None = None) -> dict:
    """The compare page: the visible runs among `run_ids` (in that order, at most MAX_COMPARE_RUNS),
    each with its series of `metrics` and a colour, every key they log, and their configs side by
    side (flattened, with the rows that differ marked)."""
    ids = list(dict.fromkeys(run_ids))[:MAX_COMPARE_RUNS]
    found = {r.pk: r for r in runs_visible(user=user).filter(pk__in=ids)}
    runs = [found[i] for i in ids if i in found]
    metrics = metrics or DEFAULT_COMPARE_METRICS
    all_keys = sorted(set(Series.objects.filter(run__in=runs).values_list("key", flat=True)))
    series = [{"id": run.pk, "name": run.name, "color": PALETTE[i % len(PALETTE)],
               "series": run_series_data(run=run, keys=metrics)["series"]} for i, run in enumerate(runs)]
    compared = {run.pk for run in runs}
    for entry, run in zip(series, runs):
        if run.forked_from_id in compared and run.forked_at_step is not None:
            _branch_off_parent(entry["series"], parent_id=run.forked_from_id, step=run.forked_at_step)
    flat = [_flatten(r.config) for r in runs]
    config_keys = sorted(set().union(*flat)) if flat else []
    config_rows = [{"key": k, "values": [f.get(k, "—") for f in flat], "differs": len({f.get(k) for f in flat}) > 1}
                   for k in config_keys]
    return {"runs": runs, "metrics": metrics, "all_keys": all_keys, "series": series, "config_rows": config_rows}


def _branch_off_parent(windows: dict, *, parent_id: int, step: int) -> None:
    """A fork compared with the run it continues: each of its lines starts at the parent's point of
    the fork step, so it branches visibly off the parent's curve there (the parent is drawn whole:
    up to the fork step alone, both after it). The fork's own points start at the next step."""
    keys = [k for k, w in windows.items() if not w["x"] or w["x"][0] > step]
    if not keys:
        return
    for key, value, ts in Point.objects.filter(series__run_id=parent_id, series__key__in=keys, step=step).values_list(
            "series__key", "value", "ts"):
        w = windows[key]
        w["x"].insert(0, step)
        w["y"].insert(0, value)
        w["t"].insert(0, ts)
        w["total"] += 1


def _flatten(config, prefix=""):
    out = {}
    if isinstance(config, dict):
        for k, v in config.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(config, sort_keys=True, default=str)
    return out


def runs_latest_values(*, run_ids: list[int], keys: list[str]) -> dict[int, dict[str, float]]:
    """{run id: {key: value at the series' last step}} for these runs and keys, in one query (the
    series' summary that ingest keeps, Series.last_value)."""
    if not run_ids or not keys:
        return {}
    out: dict[int, dict[str, float]] = {}
    rows = (Series.objects.filter(run_id__in=run_ids, key__in=keys, last_value__isnull=False)
            .values_list("run_id", "key", "last_value"))
    for run_id, key, value in rows:
        out.setdefault(run_id, {})[key] = value
    return out


def run_summary(*, run: Run) -> dict:
    return {"id": run.pk, "name": run.name, "project": run.project, "status": run.display_status,
            "external": run.external, "created_at": run.created_at.isoformat(),
            "last_seen_at": run.last_seen_at.isoformat() if run.last_seen_at else None}


def run_keys(*, run: Run) -> list[str]:
    return list(Series.objects.filter(run=run).order_by("key").values_list("key", flat=True))


def parse_window_query(params) -> dict:
    """keys=a,b&min_step=&max_step=&max_points= → kwargs of run_series_data; ValueError on bad input."""
    out: dict = {}
    keys = params.get("keys")
    if keys:
        out["keys"] = [k for k in keys.split(",") if k][:200]
    for name in ("min_step", "max_step"):
        raw = params.get(name)
        if raw not in (None, ""):
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be an integer (got {raw[:40]!r})") from None
            if value != value:
                raise ValueError(f"{name} must be an integer (got {raw[:40]!r})")
            # A range bound: clamped to the bigint steps can take (a zoom may start left of 0;
            # beyond the column's range the SQL overflowed and answered 500).
            value = int(min(max(value, 0.0), float(MAX_STEP)))
            out[name] = value
    raw = params.get("max_points")
    if raw not in (None, ""):
        try:
            mp = int(raw)
        except ValueError:
            raise ValueError(f"max_points must be an integer (got {raw!r})") from None
        if not 4 <= mp <= MAX_MAX_POINTS:
            raise ValueError(f"max_points must be between 4 and {MAX_MAX_POINTS}")
        out["max_points"] = mp
    return out


def run_series_data(*, run: Run, keys: list[str] | None = None, min_step: int | None = None,
                    max_step: int | None = None, max_points: int = DEFAULT_MAX_POINTS) -> dict:
    """{"run": id, "series": {key: {"x", "y", "t", "total", "downsampled", "range"}}}"""
    qs = Series.objects.filter(run=run)
    if keys is not None:
        qs = qs.filter(key__in=keys)
    names = dict(qs.values_list("id", "key"))
    out = {"run": run.pk, "series": _windows(names, min_step=min_step, max_step=max_step, max_points=max_points)}
    if run.attempt != run.first_attempt:  # rewound: earlier attempts' lost points are drawn faintly
        out["lost"] = lost_series(names, max_points=max_points)
    return out


def lost_series(names: dict[int, str], *, max_points: int = DEFAULT_MAX_POINTS) -> dict[str, list[dict]]:
    """What rewinds took out of these series' curves (tracking_lostpoint), per key and attempt, in
    step order and thinned to about `max_points` per attempt: {key: [{"attempt", "x", "y"}]}."""
    if not names:
        return {}
    marks = ",".join(["%s"] * len(names))
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT series_id, attempt, step, value FROM ("
            f" SELECT series_id, attempt, step, value,"
            f"  row_number() OVER (PARTITION BY series_id, attempt ORDER BY step) AS rn,"
            f"  count(*) OVER (PARTITION BY series_id, attempt) AS n"
            f" FROM tracking_lostpoint WHERE series_id IN ({marks})) t "
            f"WHERE (rn - 1) %% ((n + %s - 1) / %s) = 0 OR rn = n ORDER BY series_id, attempt, step",
            [*names, max_points, max_points])
        rows = cur.fetchall()
    out: dict[str, list[dict]] = {}
    for sid, attempt, step, value in rows:
        segs = out.setdefault(names[sid], [])
        if not segs or segs[-1]["attempt"] != attempt:
            segs.append({"attempt": attempt, "x": [], "y": []})
        segs[-1]["x"].append(step)
        segs[-1]["y"].append(value)
    return out


def _windows(names: dict[int, str], **window) -> dict:
    windows = store.series_windows(sids=list(names), **window)
    return {names[sid]: w for sid, w in sorted(windows.items(), key=lambda kv: names[kv[0]])}


def run_page_data(*, run: Run, max_points: int = DEFAULT_MAX_POINTS) -> dict:
    """What a run page's charts need on first paint: the first screen's panels with their data,
    every other key listed in groups by prefix (no data: the page fetches a group's panel from
    data.json when it scrolls into view), the aha moment and alarms, comments.

    Two queries of series whatever the run logs (its key names, then the windows of the panels'
    and the signals' keys): a run with 3,000 keys ships ~20 series, not 3,000."""
    names = dict(Series.objects.filter(run=run).values_list("id", "key"))
    layout = panel_rules.panel_layout(sorted(names.values()))
    drawn = panel_rules.panel_keys(layout["panels"])
    read = drawn | set(SIGNAL_KEYS)
    data = _windows({sid: k for sid, k in names.items() if k in read}, max_points=max_points)
    return {
        "run": {"id": run.pk, "name": run.name, **run.status_payload()},
        "panels": layout["panels"],
        "groups": layout["groups"],
        "series": {k: w for k, w in data.items() if k in drawn},
        "lost": (lost_series({sid: k for sid, k in names.items() if k in drawn}, max_points=max_points)
                 if run.attempt != run.first_attempt else {}),
        **signals_from(data, alert_thresholds(project=run.project)),
        "comments": [comment_payload(c) for c in run_comments(run=run)],
        # how the page fetches a group's panel: as many points as the first screen's
        "max_points": max_points,
        # how the page places a key that appears live: the server's rules, not a copy in JS
        "key_rules": panel_rules.page_rules(),
    }


AHA_KEY = "reflection/rate_per_1k_tokens"


def run_aha(*, series: dict) -> dict | None:
    d = series.get(AHA_KEY) or series.get("reflection/frac_responses")
    if not d:
        return None
    values = d["y"]
    spread = (max(values) - min(values)) if values else 0.0
    cp = curve_signals.detect_level_change(d["x"], values, min_shift=0.1 * spread)
    return cp.as_dict() if cp else None


# Every key the aha detector and the alarms read (curve_signals.alarms, run_aha).
SIGNAL_KEYS = [AHA_KEY, "reflection/frac_responses", "entropy", "frac_reward_zero_std", "completions/mean_length",
               "rewards/accuracy/mean", "language/mixed_frac", "rewards/language_consistency/mean", "rewards/language/mean"]


def signals_from(series: dict, thresholds: curve_signals.Thresholds = curve_signals.DEFAULT_THRESHOLDS) -> dict:
    """{"aha", "alarms"} of windows as run_series_data returns them."""
    return {"aha": run_aha(series=series),
            "alarms": curve_signals.alarms({k: (v["x"], v["y"]) for k, v in series.items()}, thresholds)}


def run_signals(*, run: Run) -> dict:
    """The aha moment and the alarms of a run, from the same points a run page's first paint reads,
    with its project's thresholds (those its notifications use)."""
    return signals_from(run_series_data(run=run, keys=SIGNAL_KEYS, max_points=PAGE_MAX_POINTS)["series"],
                        alert_thresholds(project=run.project))


# --- alarms that notify: settings and what was sent ---------------------------------------------------


def alert_settings_for(*, project: str) -> AlertSettings | None:
    """The project's own settings, else those for every project (project ""), else None."""
    rows = {a.project: a for a in AlertSettings.objects.filter(project__in={project, ""})}
    return rows.get(project) or rows.get("")


def alert_thresholds(*, project: str) -> curve_signals.Thresholds:
    return thresholds_of(alert_settings_for(project=project))


def thresholds_of(row: AlertSettings | None) -> curve_signals.Thresholds:
    if row is None:
        return curve_signals.DEFAULT_THRESHOLDS
    return curve_signals.Thresholds(**{f.name: getattr(row, f.name) for f in dataclasses.fields(curve_signals.Thresholds)})


def alert_settings_list() -> list[AlertSettings]:
    return list(AlertSettings.objects.order_by("project"))


def deliveries_list(*, project: str | None = None, limit: int = 200) -> list[Delivery]:
    """What was sent, newest first, with its alert and run."""
    qs = Delivery.objects.select_related("alert", "alert__run").order_by("-created_at", "-id")
    if project is not None:
        qs = qs.filter(alert__project=project)
    return list(qs[:limit])


def run_comments(*, run: Run) -> QuerySet[Comment]:
    return Comment.objects.filter(run=run).select_related("author").order_by("step", "created_at")


def comment_payload(c: Comment) -> dict:
    return {"id": c.pk, "step": c.step, "body": c.body, "author": c.author.username if c.author else "",
            "created_at": c.created_at.isoformat()}


