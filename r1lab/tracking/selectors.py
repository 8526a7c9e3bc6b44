"""Reads of the tracking app: runs a user may see, downsampled series, samples, comments, alarms."""
from __future__ import annotations

from django.db import connection
from django.db.models import Q, QuerySet

from r1lab.accounts.permissions import can
from r1lab.tracking import analysis, store
from r1lab.tracking import panels as panel_rules
from r1lab.tracking.ingest import MAX_STEP
from r1lab.tracking.models import Comment, Run, Sample, Series

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
        **signals_from(data),
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
    cp = analysis.detect_level_change(d["x"], values, min_shift=0.1 * spread)
    return cp.as_dict() if cp else None


# Every key the aha detector and the alarms read (analysis.alarms, run_aha).
SIGNAL_KEYS = [AHA_KEY, "reflection/frac_responses", "entropy", "frac_reward_zero_std", "completions/mean_length",
               "rewards/accuracy/mean", "language/mixed_frac", "rewards/language_consistency/mean", "rewards/language/mean"]


def signals_from(series: dict) -> dict:
    """{"aha", "alarms"} of windows as run_series_data returns them."""
    return {"aha": run_aha(series=series), "alarms": analysis.alarms({k: (v["x"], v["y"]) for k, v in series.items()})}


def run_signals(*, run: Run) -> dict:
    """The aha moment and the alarms of a run, from the same points a run page's first paint reads."""
    return signals_from(run_series_data(run=run, keys=SIGNAL_KEYS, max_points=PAGE_MAX_POINTS)["series"])


def run_comments(*, run: Run) -> QuerySet[Comment]:
    return Comment.objects.filter(run=run).select_related("author").order_by("step", "created_at")


def comment_payload(c: Comment) -> dict:
    return {"id": c.pk, "step": c.step, "body": c.body, "author": c.author.username if c.author else "",
            "created_at": c.created_at.isoformat()}


# --- rollout samples (the rollout browser builds on these) -------------------------------------------


def samples_for_step(*, run: Run, step: int) -> QuerySet[Sample]:
    """The samples of one step, group by group (G completions of a prompt together)."""
    return Sample.objects.filter(run=run, step=step).order_by("group", "index", "id")


def samples_filter(*, run: Run, step: int | None = None, correct: bool | None = None, zero_std: bool | None = None,
                   truncated: bool | None = None, language_mixed: bool | None = None,
                   has_reflection: bool | None = None, length_min: int | None = None, length_max: int | None = None,
                   reward_min: float | None = None, reward_max: float | None = None, text: str | None = None,
                   prompt_id: str | None = None, order: str | None = None) -> QuerySet[Sample]:
    """Samples of a run filtered as the rollout browser's filters say (each maps to an index).
    `order`: "advantage", "-advantage", "length", "-length" (default: step, group, index)."""
    qs = Sample.objects.filter(run=run)
    if step is not None:
        qs = qs.filter(step=step)
    if correct is not None:
        qs = qs.filter(correct=correct)
    if zero_std is not None:
        qs = qs.filter(zero_std_group=zero_std)
    if truncated is not None:
        qs = qs.filter(truncated=truncated)
    if language_mixed is not None:
        qs = qs.filter(language_mixed=language_mixed)
    if has_reflection is not None:
        qs = qs.filter(reflection_count__gt=0) if has_reflection else qs.filter(reflection_count=0)
    if length_min is not None:
        qs = qs.filter(length__gte=length_min)
    if length_max is not None:
        qs = qs.filter(length__lte=length_max)
    if reward_min is not None:
        qs = qs.filter(reward__gte=reward_min)
    if reward_max is not None:
        qs = qs.filter(reward__lte=reward_max)
    if prompt_id:
        qs = qs.filter(prompt_id=prompt_id)
    if text:
        qs = qs.filter(Q(completion__icontains=text) | Q(prompt__icontains=text))
    if order in ("advantage", "-advantage", "length", "-length"):
        return qs.order_by(order, "id")
    return qs.order_by("step", "group", "index", "id")


def sample_steps(*, run: Run) -> list[int]:
    return list(Sample.objects.filter(run=run).values_list("step", flat=True).distinct().order_by("step"))
