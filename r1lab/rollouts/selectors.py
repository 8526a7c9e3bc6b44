"""Reads of the rollout browser: every query of Sample rows (the workbench's are in rs/).

Rollouts are tracking.Sample rows; every query here is scoped to one run (the user's access to
the run is checked by the view through tracking.selectors.runs_visible) and served by the
Sample indexes (run, step, group, index), (run, prompt_id, step) and the partial filter indexes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import (Avg, Case, Count, Exists, ExpressionWrapper, F, FloatField, IntegerField, OuterRef, Q,
                              QuerySet, Value, When)

from r1lab.curation.models import CurationProject
from r1lab.pipelines.models import PromptSet, Stage
from r1lab.tracking import prompt_stats
from r1lab.tracking.models import PromptClassStep, PromptLineage, Run, Sample
from r1lab.tracking.selectors import runs_visible

# Characters above which a completion is shown collapsed with a "show all" button.
COLLAPSE_CHARS = 1200
# What the pages never need of a Sample row (think/answer are re-derived as display segments).
_DEFERRED = ("think", "answer", "dedupe", "created_at", "extra")


def adv_sign(advantage: float | None) -> str:
    if advantage is None:
        return "none"
    if advantage > 1e-9:
        return "pos"
    if advantage < -1e-9:
        return "neg"
    return "zero"


@dataclass
class CompletionView:
    """One completion as a card shows it (rollouts.render makes its HTML, text escaped)."""

    obj: object  # a Sample, an RSRow, or a StepRow
    components: list[str]  # the reward component names the page shows, in order
    long: bool
    matched: bool = True
    card: str = ""  # its HTML, set by rollouts.render.attach_cards

    @property
    def adv_sign(self) -> str:
        return adv_sign(getattr(self.obj, "advantage", None))


def completion_view(obj, component_names: list[str], matched: bool = True) -> CompletionView:
    return CompletionView(obj=obj, components=component_names, long=len(obj.completion) > COLLAPSE_CHARS, matched=matched)


# The columns a step page reads; rows come back as StepRow (a step holds ~1,000: model instances
# cost twice as much to build and are not needed for display).
STEP_FIELDS = ("id", "group", "index", "prompt_id", "prompt", "completion", "rewards", "reward", "advantage", "length",
               "truncated", "correct", "reflection_count", "language_mixed", "zero_std_group", "step")


class StepRow:
    __slots__ = STEP_FIELDS + ("pk",)

    def __init__(self, values: tuple):
        for name, v in zip(STEP_FIELDS, values):
            setattr(self, name, v)
        self.pk = self.id


def component_names(rows) -> list[str]:
    """Every reward component seen in `rows`, sorted (jsonb keeps no insertion order)."""
    names: set[str] = set()
    for r in rows:
        names.update(r.rewards or ())
    return sorted(names)


@dataclass
class GroupView:
    group: int
    prompt: str
    prompt_id: str
    completions: list[CompletionView] = field(default_factory=list)
    size: int = 0
    reward_mean: float = 0.0
    reward_std: float = 0.0
    correct: int = 0
    graded: int = 0
    zero_std: bool | None = None
    matched: int = 0
    card: str = ""  # its HTML, set by the view (rollouts.render.group_html)


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


def runs_with_samples(*, user, limit: int = 300) -> list[Run]:
    return list(runs_visible(user=user).filter(Exists(Sample.objects.filter(run=OuterRef("pk"))))[:limit])


def rs_stages(*, limit: int = 300) -> list[Stage]:
    """Rejection-sampling stages, newest run first (the workbench's index)."""
    return list(Stage.objects.filter(kind="rejection_sampling").select_related("run", "rs_dataset")
                .order_by("-run__created_at", "index")[:limit])


def sample_visible(*, user, sample_id: int) -> Sample | None:
    sample = Sample.objects.select_related("run").filter(pk=sample_id).first()
    if sample is None or not runs_visible(user=user).filter(pk=sample.run_id).exists():
        return None
    return sample


def send_targets() -> list[dict]:
    """Curation projects a completion can be sent to."""
    return list(CurationProject.objects.order_by("name").values("id", "name", "slug"))


def run_sample_steps(*, run: Run) -> list[int]:
    """The run's distinct sample steps by a loose index scan (one index probe per step) rather than
    a DISTINCT over every row: 1,000 steps of a million rollouts read 1,000 index entries."""
    table = Sample._meta.db_table
    sql = (f"WITH RECURSIVE s(step) AS (SELECT MIN(step) FROM {table} WHERE run_id = %s "
           f"UNION ALL SELECT (SELECT MIN(t.step) FROM {table} t WHERE t.run_id = %s AND t.step > s.step) "
           f"FROM s WHERE s.step IS NOT NULL) SELECT step FROM s WHERE step IS NOT NULL")
    with connection.cursor() as cur:
        cur.execute(sql, [run.pk, run.pk])
        return [r[0] for r in cur.fetchall()]


def step_neighbours(*, run: Run, step: int) -> tuple[int | None, int | None]:
    prev = Sample.objects.filter(run=run, step__lt=step).order_by("-step").values_list("step", flat=True).first()
    nxt = Sample.objects.filter(run=run, step__gt=step).order_by("step").values_list("step", flat=True).first()
    return prev, nxt


_SORT_KEYS = {
    "advantage": lambda c: (c.obj.advantage is None, c.obj.advantage or 0.0),
    "-advantage": lambda c: (c.obj.advantage is None, -(c.obj.advantage or 0.0)),
    "length": lambda c: c.obj.length,
    "-length": lambda c: -c.obj.length,
}


def step_groups(*, run: Run, step: int, filters: dict | None = None, order: str | None = None) -> dict:
    """The groups of one step. With filters, the groups holding at least one matching completion,
    each whole (its G completions give the advantages their meaning), the others dimmed.
    `order` sorts the completions inside each group and the groups by their best / longest."""
    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    matched_ids: set[int] | None = None
    rows_qs = Sample.objects.filter(run=run, step=step).order_by("group", "index", "id")
    if filters:
        hits = list(samples_filter(run=run, step=step, **filters).values_list("id", "group"))
        matched_ids = {i for i, _ in hits}
        rows_qs = rows_qs.filter(group__in=sorted({g for _, g in hits}))
    rows = [StepRow(v) for v in rows_qs.values_list(*STEP_FIELDS)]
    names = component_names(rows)
    groups: dict[int, GroupView] = {}
    for s in rows:
        g = groups.get(s.group)
        if g is None:
            g = groups[s.group] = GroupView(group=s.group, prompt=s.prompt, prompt_id=s.prompt_id)
        matched = matched_ids is None or s.pk in matched_ids
        g.completions.append(completion_view(s, names, matched))
        g.matched += matched
    for g in groups.values():
        rewards = [c.obj.reward for c in g.completions]
        g.size = len(rewards)
        g.reward_mean = mean = math.fsum(rewards) / len(rewards)
        g.reward_std = math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / len(rewards))  # population std, as GRPO
        graded = [c.obj.correct for c in g.completions if c.obj.correct is not None]
        g.graded, g.correct = len(graded), sum(graded)
        g.zero_std = g.completions[0].obj.zero_std_group
        if order in _SORT_KEYS:
            g.completions.sort(key=_SORT_KEYS[order])
    out = list(groups.values())
    if order in _SORT_KEYS:
        out.sort(key=lambda g: _SORT_KEYS[order](g.completions[0]))
    return {"groups": out, "components": names, "samples": len(rows),
            "matched": len(matched_ids) if matched_ids is not None else len(rows)}


# A text search over the whole run reads this many logged steps per page of results: ILIKE has no
# index, and a rare word would otherwise read every completion of the run (benchmarks/rollouts.py:
# ~20 s at a million rollouts). The page links to the next window.
TEXT_WINDOW_STEPS = 8


def text_windows(*, run: Run) -> list[tuple[int, int]]:
    """(first step, last step) of each TEXT_WINDOW_STEPS logged steps of the run."""
    steps = run_sample_steps(run=run)
    return [(steps[i], steps[min(i + TEXT_WINDOW_STEPS, len(steps)) - 1]) for i in range(0, len(steps), TEXT_WINDOW_STEPS)]


def run_search(*, run: Run, filters: dict, order: str | None = None, offset: int = 0, limit: int = 50,
               step_min: int | None = None, step_max: int | None = None) -> tuple[list[CompletionView], bool]:
    """One page of matching completions over the whole run (or steps step_min..step_max), and
    whether there is a next page. No total count: counting a million rows costs more than the page."""
    qs = samples_filter(run=run, order=order, **{k: v for k, v in filters.items() if v is not None}).defer(*_DEFERRED)
    if order in ("advantage", "-advantage", "length", "-length"):
        # Ordered by the indexed column alone, the (run, length) / (run, advantage) index hands rows
        # over in order; an `id` tie-break would sort every tie first (~400 ms for a length range
        # at a million rows vs ~10 ms). Ties keep the index's own (heap) order, stable for rows
        # that are not updated, which rollouts are not after ingest.
        qs = qs.order_by(order)
    if step_min is not None:
        qs = qs.filter(step__gte=step_min)
    if step_max is not None:
        qs = qs.filter(step__lte=step_max)
    rows = list(qs[offset:offset + limit + 1])
    names = component_names(rows)
    return [completion_view(s, names) for s in rows[:limit]], len(rows) > limit


def prompt_history(*, run: Run, prompt_id: str, offset: int = 0, limit: int = 10) -> dict:
    """The same prompt across steps: a per-step summary over all its steps (the chart) and one page
    of steps with their completions, newest-last."""
    base = Sample.objects.filter(run=run, prompt_id=prompt_id)
    summary = list(
        base.values("step").order_by("step").annotate(
            n=Count("id"), reward=Avg("reward"), length=Avg("length"),
            accuracy=Avg(Case(When(correct=True, then=Value(1.0)), When(correct=False, then=Value(0.0)), output_field=FloatField())),
            reflection=Avg(Case(When(reflection_count__gt=0, then=Value(1.0)), default=Value(0.0), output_field=FloatField())),
        )
    )
    steps = [r["step"] for r in summary][offset:offset + limit]
    rows = list(base.filter(step__in=steps).defer(*_DEFERRED).order_by("step", "group", "index", "id"))
    names = component_names(rows)
    by_step: dict[int, list[CompletionView]] = {}
    for s in rows:
        by_step.setdefault(s.step, []).append(completion_view(s, names))
    stats = {r["step"]: r for r in summary}
    return {"summary": summary, "prompt": rows[0].prompt if rows else "", "components": names,
            "steps": [{"step": st, "stats": stats[st], "completions": by_step.get(st, [])} for st in steps],
            "total_steps": len(summary)}


def _reflection_share():
    return Avg(Case(When(reflection_count__gt=0, then=Value(1.0)), default=Value(0.0), output_field=FloatField()))


def aha_prompts(*, run: Run, step: int, limit: int = 20) -> list[dict]:
    """The prompts of `step` whose reflection rate moved most: the share of their completions with
    a reflection marker at this step vs in the same prompt's earlier steps. Two aggregate queries
    on the (run, step) and (run, prompt_id, step) indexes; the second reads each prompt's earlier
    rollouts (a prompt recurs once per epoch, so a few groups each: ~40 ms at a million rows)."""
    now = {r["prompt_id"]: r for r in Sample.objects.filter(run=run, step=step).exclude(prompt_id="")
           .values("prompt_id").annotate(n=Count("id"), frac=_reflection_share())}
    if not now:
        return []
    before = {r["prompt_id"]: r for r in Sample.objects.filter(run=run, prompt_id__in=list(now), step__lt=step)
              .values("prompt_id").annotate(n=Count("id"), frac=_reflection_share())}
    out = []
    for pid, r in now.items():
        b = before.get(pid)
        if b is None:
            continue
        out.append({"prompt_id": pid, "before": b["frac"], "after": r["frac"], "delta": r["frac"] - b["frac"],
                    "n_before": b["n"], "n_after": r["n"]})
    out.sort(key=lambda d: (-abs(d["delta"]), d["prompt_id"]))
    return out[:limit]


# --- prompt lineage: what the model learned ---------------------------------------------------------
# tracking.prompt_stats keeps the rollup at ingest (PromptLineage: one row per prompt; PromptStepStat:
# one per prompt and step). These read it, never the rollouts: a page costs the same at a million.

CLASS_LABELS = prompt_stats.LABELS
CLASS_HELP = {
    prompt_stats.LEARNED: "latest solve rate ≥ 75% after one ≤ 25%",
    prompt_stats.FORGOTTEN: "latest solve rate ≤ 25% after one ≥ 75%",
    prompt_stats.ALWAYS: "every group all correct",
    prompt_stats.NEVER: "every group all wrong",
    prompt_stats.MIXED: "none of the above",
    prompt_stats.ZERO_VARIANCE: "latest group: all G rewards equal, no learning signal (overlaps the classes)",
}
# ?sort= keys of the prompts table (a leading "-" sorts descending).
LINEAGE_SORTS = ("class", "prompt", "samplings", "first_step", "last_step", "first_rate", "last_rate", "rate", "delta")


def prompt_lineage_counts(*, run: Run) -> dict[str, int]:
    """How many prompts are in each class (and zero-variance), and in all: one aggregate."""
    agg = PromptLineage.objects.filter(run=run).aggregate(
        all=Count("id"), **{c: Count("id", filter=Q(cls=c)) for c in prompt_stats.CLASSES},
        **{prompt_stats.ZERO_VARIANCE: Count("id", filter=Q(zero_var=True))})
    return {k: v or 0 for k, v in agg.items()}


def prompt_lineage_missing(*, run: Run) -> bool:
    """The run has graded rollouts with prompt ids but no rollup: logged before the rollup existed."""
    if PromptLineage.objects.filter(run=run).exists():
        return False
    return Sample.objects.filter(run=run, correct__isnull=False).exclude(prompt_id="").exists()


def prompt_lineage_timeline(*, run: Run) -> dict:
    """The class counts over steps: at each step where a prompt's class (or zero-variance flag)
    moved, how many prompts are in each: the running sum of PromptClassStep, one row per step."""
    keys = (*prompt_stats.CLASSES, prompt_stats.ZERO_VARIANCE)
    counts = dict.fromkeys(keys, 0)
    steps: list[int] = []
    series: dict[str, list[int]] = {k: [] for k in keys}
    for row in PromptClassStep.objects.filter(run=run).order_by("step").values_list("step", *keys):
        if not any(row[1:]):
            continue
        steps.append(row[0])
        for k, v in zip(keys, row[1:]):
            counts[k] += v
            series[k].append(counts[k])
    return {"steps": steps, "counts": series, "labels": {k: CLASS_LABELS[k] for k in keys}}


def prompt_lineage_rows(*, run: Run, cls: str | None = None, sort: str = "class", offset: int = 0,
                        limit: int = 50) -> tuple[list[PromptLineage], bool]:
    """One page of the run's prompts (of class `cls`, or zero-variance), sorted by `sort` (a
    LINEAGE_SORTS key, "-" for descending), and whether there is a next page."""
    qs = PromptLineage.objects.filter(run=run).defer("gold")
    if cls == prompt_stats.ZERO_VARIANCE:
        qs = qs.filter(zero_var=True)
    elif cls:
        qs = qs.filter(cls=cls)
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    if key == "class":
        expr = Case(*[When(Q(cls=c), then=Value(i)) for i, c in enumerate(prompt_stats.CLASSES)], output_field=IntegerField())
    elif key == "rate":
        expr = ExpressionWrapper(F("correct") * 1.0 / F("graded"), output_field=FloatField())
    elif key == "delta":
        expr = ExpressionWrapper(F("last_rate") - F("first_rate"), output_field=FloatField())
    elif key == "prompt":
        expr = F("prompt_id")
    elif key in LINEAGE_SORTS:
        expr = F(key)
    else:
        raise ValueError(f"unknown sort {sort!r}")
    qs = qs.order_by(expr.desc() if desc else expr.asc(), "prompt_id")
    rows = list(qs[offset:offset + limit + 1])
    return rows[:limit], len(rows) > limit


def run_prompt_set(*, run: Run) -> PromptSet | None:
    """The prompt set a pipeline stage's tracked run trained on (its resolved train data), if any."""
    stage = Stage.objects.filter(tracked_run=run).only("inputs", "resolved_inputs").first()
    if stage is None:
        return None
    ref = (stage.resolved_inputs or {}).get("train_data") or (stage.inputs or {}).get("train_data") or {}
    if ref.get("from") != "prompt_set":
        return None
    return PromptSet.objects.filter(pk=ref.get("id")).first()


def lineage_exports(*, run: Run) -> list[PromptSet]:
    """Prompt sets exported from this run's prompt lineage, newest first."""
    return list(PromptSet.objects.filter(source_run=run).order_by("-created_at"))
