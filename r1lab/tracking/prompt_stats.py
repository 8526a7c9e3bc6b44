"""The prompt-lineage rollup: per (run, prompt, step) a prompt's graded rollouts and the prompt's
class, kept at ingest, so that the prompt-lineage page reads one row per prompt and its chart one
row per step, never the rollouts.

A prompt's solve rate at a step is correct / graded over its rollouts at that step (its group of
G, or groups when it was drawn twice). Its class, from its samplings up to that step:

    learned      its latest rate >= 75%, and an earlier one was <= 25%
    forgotten    its latest rate <= 25%, and an earlier one was >= 75%
    always       every rate was 100% (always solved)
    never        every rate was 0% (never solved)
    mixed        anything else

and, apart from the class (it overlaps them), **zero-variance**: every reward of its latest
sampling was equal (all G the same: the trainer got no gradient from it).

Three tables (tracking.models): PromptStepStat, a prompt's rollouts at a step and its class after
them; PromptLineage, a prompt summed up (the page's table); PromptClassStep, how the class counts
moved at a step (the chart is their running sum: one row per step, however many prompts).

Ingest (services._samples_insert) calls `prompt_stats_update` with the (prompt, step) pairs a
batch added. A few statements, whatever the run holds: the pairs' aggregates from the rollouts
(the (run, prompt_id, step) index), the touched prompts' stored rows, then an upsert of the rows
whose values changed, one of the prompts, and one increment of the steps' class moves. A batch
may hold part of a group or arrive late (a retry): the touched prompts are re-derived from their
whole history, a handful of rows each (a prompt recurs once per epoch), and the class moves are
adjusted by the difference between their old and new rows. Batches of one run take a
transaction-level advisory lock first (PostgreSQL; SQLite writes one at a time anyway), so two
connections logging the same run never derive a prompt without each other's step. A rewind drops the rows after its step and
re-derives the prompts it touched (`prompt_stats_rewind`); a run logged before this table existed
is filled by `prompt_stats_rebuild` (`manage.py prompt_lineage_rebuild`, or the page's button).
Rollouts without a prompt id or without an accuracy reward (correct is null) are not counted.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q

from r1lab.tracking.models import PromptClassStep, PromptLineage, PromptStepStat, Sample

LEARNED, FORGOTTEN, ALWAYS, NEVER, MIXED = "learned", "forgotten", "always", "never", "mixed"
CLASSES = (LEARNED, FORGOTTEN, ALWAYS, NEVER, MIXED)
ZERO_VARIANCE = "zero_variance"  # not a class (it overlaps them): a flag, listed and exported like one
LABELS = {LEARNED: "learned", FORGOTTEN: "forgotten", ALWAYS: "always solved", NEVER: "never solved", MIXED: "mixed",
          ZERO_VARIANCE: "zero-variance"}
LOW, HIGH = 0.25, 0.75
EPS = 1e-9  # rewards closer than this are equal (as ingest's zero_std_group)
_LOCK_CLASS = 0x5052  # pg_advisory_xact_lock(class, run): "PR", prompt rollup
_STAT_FIELDS = ("n", "graded", "correct", "zero_var", "cls", "cls_before", "zero_var_before")
_MOVE_COLUMNS = (*CLASSES, ZERO_VARIANCE)  # PromptClassStep's count columns
_LINEAGE_FIELDS = ("prompt", "gold", "cls", "zero_var", "samplings", "first_step", "last_step", "first_rate",
                   "last_rate", "min_rate", "max_rate", "graded", "correct")


def classify(rate: float, lowest: float, highest: float) -> str:
    """The class of a prompt whose latest solve rate is `rate` and whose rates so far (this one
    included) ranged from `lowest` to `highest`."""
    if rate >= HIGH and lowest <= LOW:
        return LEARNED
    if rate <= LOW and highest >= HIGH:
        return FORGOTTEN
    if lowest >= 1.0:
        return ALWAYS
    if highest <= 0.0:
        return NEVER
    return MIXED


@dataclass(frozen=True)
class StepAgg:
    """A prompt's rollouts at one step: how many, graded, correct, and whether they all scored alike."""

    step: int
    n: int
    graded: int
    correct: int
    zero_var: bool


@dataclass(frozen=True)
class Derived:
    """A StepAgg with the prompt's class after it (and before it): one PromptStepStat row."""

    agg: StepAgg
    cls: str
    cls_before: str
    zero_var_before: bool | None

    @property
    def rate(self) -> float:
        return self.agg.correct / self.agg.graded

    def values(self) -> tuple:
        a = self.agg
        return (a.n, a.graded, a.correct, a.zero_var, self.cls, self.cls_before, self.zero_var_before)


def moves(values: tuple) -> dict[str, int]:
    """How one PromptStepStat row (its values, as Derived.values) moved the class counts: +1 to
    the class the prompt entered, -1 to the one it left; zero-variance alike. {} when nothing moved."""
    _, _, _, zero_var, cls, cls_before, zero_var_before = values
    out: dict[str, int] = {}
    if cls != cls_before:
        out[cls] = 1
        if cls_before:
            out[cls_before] = -1
    if zero_var != bool(zero_var_before):
        out[ZERO_VARIANCE] = 1 if zero_var else -1
    return out


def derive(aggs: list[StepAgg]) -> list[Derived]:
    """One prompt's samplings in step order (graded ones only) → their rows with the class after each."""
    out: list[Derived] = []
    lowest = highest = None
    cls_before, zv_before = "", None
    for a in aggs:
        rate = a.correct / a.graded
        lowest = rate if lowest is None else min(lowest, rate)
        highest = rate if highest is None else max(highest, rate)
        cls = classify(rate, lowest, highest)
        out.append(Derived(a, cls, cls_before, zv_before))
        cls_before, zv_before = cls, a.zero_var
    return out


def summary(rows: list[Derived]) -> dict:
    """A prompt's PromptLineage values (not its text) from its derived rows, in step order."""
    rates = [r.rate for r in rows]
    last = rows[-1]
    return {"cls": last.cls, "zero_var": last.agg.zero_var, "samplings": len(rows),
            "first_step": rows[0].agg.step, "last_step": last.agg.step, "first_rate": rates[0], "last_rate": rates[-1],
            "min_rate": min(rates), "max_rate": max(rates), "graded": sum(r.agg.graded for r in rows),
            "correct": sum(r.agg.correct for r in rows)}


def gold_of(extra: dict | None) -> str:
    """The gold answer a trainer logged with a rollout (`gold`, else `answer`, in its extra fields)."""
    extra = extra or {}
    gold = extra.get("gold")
    if gold is None:
        gold = extra.get("answer")
    return "" if gold is None else str(gold)


# --- writes ----------------------------------------------------------------------------------------


def _lock(run_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, run_id % 2**31])


def _aggregates(qs) -> list[dict]:
    """(prompt_id, step) aggregates of a Sample queryset; .order_by() drops Sample's default
    ordering, which would otherwise split the groups."""
    return list(qs.values("prompt_id", "step").order_by().annotate(
        n=Count("id"), graded=Count("correct"), ok=Count("id", filter=Q(correct=True)), rmin=Min("reward"),
        rmax=Max("reward")))


def _agg(row: dict) -> StepAgg:
    return StepAgg(row["step"], row["n"], row["graded"], row["ok"], row["n"] >= 2 and row["rmax"] - row["rmin"] <= EPS)


def _stored(run_id: int, prompt_ids: list[str]) -> dict[str, dict[int, tuple]]:
    """{prompt: {step: (agg, stored values)}} of the prompts' PromptStepStat rows."""
    out: dict[str, dict[int, tuple]] = defaultdict(dict)
    for r in PromptStepStat.objects.filter(run_id=run_id, prompt_id__in=prompt_ids).values("prompt_id", "step", *_STAT_FIELDS):
        agg = StepAgg(r["step"], r["n"], r["graded"], r["correct"], r["zero_var"])
        out[r["prompt_id"]][r["step"]] = (agg, tuple(r[f] for f in _STAT_FIELDS))
    return out


def _add_moves(step_moves: dict[int, dict[str, int]], step: int, values: tuple, sign: int) -> None:
    for col, k in moves(values).items():
        d = step_moves.setdefault(step, {})
        d[col] = d.get(col, 0) + sign * k


def _write_moves(run_id: int, step_moves: dict[int, dict[str, int]]) -> None:
    """Add these per-step class moves to PromptClassStep (one statement: insert or increment)."""
    rows = [(run_id, step, *[d.get(c, 0) for c in _MOVE_COLUMNS]) for step, d in sorted(step_moves.items()) if any(d.values())]
    if not rows:
        return
    table = PromptClassStep._meta.db_table
    cols = ", ".join(_MOVE_COLUMNS)
    marks = ", ".join(["%s"] * (2 + len(_MOVE_COLUMNS)))
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _MOVE_COLUMNS)
    with connection.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (run_id, step, {cols}) VALUES ({marks}) "
                        f"ON CONFLICT (run_id, step) DO UPDATE SET {sets}", rows)


def _write(run_id: int, rows: list[tuple[str, Derived]], prompts: dict[str, dict]) -> None:
    """Upsert PromptStepStat rows and PromptLineage rows ({prompt id: values incl. text})."""
    if rows:
        PromptStepStat.objects.bulk_create(
            [PromptStepStat(run_id=run_id, prompt_id=pid, step=d.agg.step, **dict(zip(_STAT_FIELDS, d.values())))
             for pid, d in rows],
            update_conflicts=True, unique_fields=["run", "prompt_id", "step"], update_fields=list(_STAT_FIELDS),
            batch_size=2000)
    if prompts:
        PromptLineage.objects.bulk_create(
            [PromptLineage(run_id=run_id, prompt_id=pid, **values) for pid, values in prompts.items()],
            update_conflicts=True, unique_fields=["run", "prompt_id"], update_fields=list(_LINEAGE_FIELDS),
            batch_size=2000)


def prompt_stats_update(*, run_id: int, pairs: set[tuple[str, int]], texts: dict[str, tuple[str, str]]) -> None:
    """After ingest stored new rollouts of these (prompt id, step) pairs: re-derive the prompts they
    touch. `texts`: {prompt id: (prompt, gold)} as the batch carried them. Call inside the ingest
    transaction."""
    pairs = {(p, s) for p, s in pairs if p}
    if not pairs:
        return
    _lock(run_id)
    prompt_ids = sorted({p for p, _ in pairs})
    steps = sorted({s for _, s in pairs})
    fresh = {(r["prompt_id"], r["step"]): _agg(r)
             for r in _aggregates(Sample.objects.filter(run_id=run_id, prompt_id__in=prompt_ids, step__in=steps))
             if (r["prompt_id"], r["step"]) in pairs and r["graded"]}
    stored = _stored(run_id, prompt_ids)
    rows: list[tuple[str, Derived]] = []
    prompts: dict[str, dict] = {}
    step_moves: dict[int, dict[str, int]] = {}
    for pid in prompt_ids:
        have = stored.get(pid, {})
        aggs = {step: agg for step, (agg, _) in have.items()}
        aggs.update({step: agg for (p, step), agg in fresh.items() if p == pid})
        if not aggs:
            continue
        derived = derive([aggs[s] for s in sorted(aggs)])
        for d in derived:
            old = have.get(d.agg.step)
            if old is None or old[1] != d.values():
                rows.append((pid, d))
                _add_moves(step_moves, d.agg.step, d.values(), +1)
                if old is not None:
                    _add_moves(step_moves, d.agg.step, old[1], -1)
        prompt, gold = texts.get(pid, ("", ""))
        prompts[pid] = {"prompt": prompt, "gold": gold, **summary(derived)}
    _write(run_id, rows, prompts)
    _write_moves(run_id, step_moves)


def prompt_stats_rewind(*, run_id: int, after_step: int) -> None:
    """The run's rollouts after `after_step` are gone (tracking.services.tracked_run_rewind): so
    are their rows; the prompts they belonged to are summed up again from what is left."""
    _lock(run_id)
    gone = PromptStepStat.objects.filter(run_id=run_id, step__gt=after_step)
    affected = sorted(set(gone.values_list("prompt_id", flat=True)))
    gone.delete()
    # The moves of later steps came from the rows just deleted only: earlier rows do not change.
    PromptClassStep.objects.filter(run_id=run_id, step__gt=after_step).delete()
    for i in range(0, len(affected), 1000):
        chunk = affected[i:i + 1000]
        stored = _stored(run_id, chunk)
        texts = dict((pid, (p, g)) for pid, p, g in PromptLineage.objects.filter(run_id=run_id, prompt_id__in=chunk)
                     .values_list("prompt_id", "prompt", "gold"))
        prompts = {}
        for pid in chunk:
            have = stored.get(pid)
            if not have:
                continue
            # The rows left are the earlier samplings: their classes depend on what came before only.
            derived = derive([have[s][0] for s in sorted(have)])
            prompt, gold = texts.get(pid, ("", ""))
            prompts[pid] = {"prompt": prompt, "gold": gold, **summary(derived)}
        PromptLineage.objects.filter(run_id=run_id, prompt_id__in=[p for p in chunk if p not in prompts]).delete()
        _write(run_id, [], prompts)


def prompt_stats_rebuild(*, run_id: int) -> int:
    """Every prompt of the run from its rollouts (one aggregate over them): for runs logged before
    this rollup existed, or to check it. Returns how many prompts the run has."""
    with transaction.atomic():
        _lock(run_id)
        PromptStepStat.objects.filter(run_id=run_id).delete()
        PromptLineage.objects.filter(run_id=run_id).delete()
        PromptClassStep.objects.filter(run_id=run_id).delete()
        by_prompt: dict[str, dict[int, StepAgg]] = defaultdict(dict)
        for r in _aggregates(Sample.objects.filter(run_id=run_id).exclude(prompt_id="")):
            if r["graded"]:
                by_prompt[r["prompt_id"]][r["step"]] = _agg(r)
        # The prompt's text and gold answer from its first rollout.
        first_ids = list(Sample.objects.filter(run_id=run_id).exclude(prompt_id="").values("prompt_id")
                         .order_by().annotate(first=Min("id")).values_list("first", flat=True)) if by_prompt else []
        texts: dict[str, tuple[str, str]] = {}
        for i in range(0, len(first_ids), 2000):
            for pid, prompt, extra in Sample.objects.filter(pk__in=first_ids[i:i + 2000]).values_list("prompt_id", "prompt", "extra"):
                texts[pid] = (prompt, gold_of(extra))
        rows: list[tuple[str, Derived]] = []
        prompts: dict[str, dict] = {}
        step_moves: dict[int, dict[str, int]] = {}
        for pid, aggs in by_prompt.items():
            derived = derive([aggs[s] for s in sorted(aggs)])
            rows += [(pid, d) for d in derived]
            for d in derived:
                _add_moves(step_moves, d.agg.step, d.values(), +1)
            prompt, gold = texts.get(pid, ("", ""))
            prompts[pid] = {"prompt": prompt, "gold": gold, **summary(derived)}
            if len(rows) >= 20000:
                _write(run_id, rows, {})
                rows = []
        _write(run_id, rows, prompts)
        _write_moves(run_id, step_moves)
    return len(by_prompt)
