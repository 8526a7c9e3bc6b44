"""Reads of the rejection-sampling workbench."""
from __future__ import annotations


from django.db.models import Count, Q, QuerySet

from r1lab.curation.models import CurationProject
from r1lab.rollouts.models import RSDataset, RSRow, SpotCheck, SpotCheckItem
from r1lab.rollouts.stats import Proportion, wilson_interval
from r1lab.rollouts.selectors import CompletionView, completion_view, component_names
from r1lab.pipelines.models import Stage


# --- rejection-sampling workbench -----------------------------------------------------------------


def rs_stage(*, stage_id: int) -> Stage | None:
    return Stage.objects.select_related("run").filter(pk=stage_id, kind="rejection_sampling").first()


def rs_dataset(*, stage: Stage) -> RSDataset | None:
    return RSDataset.objects.filter(stage=stage).select_related("dataset_version", "curation_project").first()


def rs_rows(*, dataset: RSDataset, kept: bool, reason: str | None = None, filters: dict | None = None,
            order: str | None = None) -> QuerySet[RSRow]:
    qs = RSRow.objects.filter(dataset=dataset, kept=kept)
    if reason:
        qs = qs.filter(reason=reason)
    f = {k: v for k, v in (filters or {}).items() if v is not None}
    simple = {"correct": "correct", "truncated": "truncated", "language_mixed": "language_mixed"}
    for key, col in simple.items():
        if key in f:
            qs = qs.filter(**{col: f[key]})
    if "has_reflection" in f:
        qs = qs.filter(reflection_count__gt=0) if f["has_reflection"] else qs.filter(reflection_count=0)
    for key, lookup in (("length_min", "length__gte"), ("length_max", "length__lte"), ("reward_min", "reward__gte"), ("reward_max", "reward__lte")):
        if key in f:
            qs = qs.filter(**{lookup: f[key]})
    if f.get("text"):
        qs = qs.filter(Q(completion__icontains=f["text"]) | Q(prompt__icontains=f["text"]))
    if order in ("length", "-length"):
        return qs.order_by(order, "id")
    return qs.order_by("prompt_id", "sample", "id")


def rs_reason_counts(*, dataset: RSDataset) -> dict[str, int]:
    return dict(RSRow.objects.filter(dataset=dataset, kept=False).values_list("reason").annotate(n=Count("id")).values_list("reason", "n"))


def funnel_chart(*, dataset: RSDataset) -> dict:
    """The funnel as plotly wants it: stage names and how many candidates remain after each."""
    f = dataset.funnel or {}
    names, values = ["sampled"], [f.get("sampled", dataset.kept_count + dataset.removed_count)]
    for name in f.get("filters") or list((f.get("remaining") or {}).keys()):
        if name in (f.get("remaining") or {}):
            names.append(name)
            values.append(f["remaining"][name])
    removed = f.get("removed") or {}
    return {"names": names, "values": values, "removed": [removed.get(n, 0) for n in names]}


def spot_check_summary(*, spot_check: SpotCheck | None) -> dict | None:
    if spot_check is None:
        return None
    counts = dict(SpotCheckItem.objects.filter(spot_check=spot_check).values_list("verdict").annotate(n=Count("id")).values_list("verdict", "n"))
    good, bad, todo = counts.get("good", 0), counts.get("bad", 0), counts.get("", 0)
    est: Proportion = wilson_interval(bad, good + bad)
    return {"spot_check": spot_check, "good": good, "bad": bad, "todo": todo, "judged": good + bad,
            "size": good + bad + todo, "complete": todo == 0 and good + bad > 0, "error": est}


def latest_spot_check(*, dataset: RSDataset) -> SpotCheck | None:
    return SpotCheck.objects.filter(dataset=dataset).order_by("-created_at", "-id").first()


def spot_check_items(*, spot_check: SpotCheck) -> list[tuple[SpotCheckItem, CompletionView]]:
    items = list(SpotCheckItem.objects.filter(spot_check=spot_check).select_related("row", "judged_by").order_by("position"))
    names = component_names([i.row for i in items])
    return [(i, completion_view(i.row, names)) for i in items]


def rs_bad_row_ids(*, dataset: RSDataset) -> set[int]:
    """Kept rows a human marked bad in any spot-check of the dataset (the freeze leaves them out)."""
    return set(SpotCheckItem.objects.filter(spot_check__dataset=dataset, verdict=SpotCheckItem.Verdict.BAD).values_list("row_id", flat=True))



def rs_project_slug(stage_id: int) -> str:
    """The curation project that receives a stage's kept rows when they are frozen."""
    return f"rs-stage-{stage_id}"


def rs_project(*, dataset: RSDataset) -> CurationProject | None:
    """The dataset's curation project: set by its first freeze, or made beforehand under its slug."""
    if dataset.curation_project_id:
        return dataset.curation_project
    return CurationProject.objects.filter(slug=rs_project_slug(dataset.stage_id)).first()


def rs_freeze_refusal(*, dataset: RSDataset, user) -> str | None:
    """Why `user` may not freeze `dataset`, or None. Four eyes (issue 15): whoever judged rows of
    the latest spot-check (the one the freeze relies on) does not also freeze the set, unless the
    curation project allows one person to do both (CurationProject.rs_one_person_freeze). Staff
    included: the rule is about who looked, not about roles."""
    spot = latest_spot_check(dataset=dataset)
    if spot is None:
        return None  # the freeze refuses anyway: it needs a finished spot-check
    if not SpotCheckItem.objects.filter(spot_check=spot, judged_by=user).exists():
        return None
    project = rs_project(dataset=dataset)
    if project is not None and project.rs_one_person_freeze:
        return None
    where = (f"the curation project “{project.name}” can allow one person to do both (its settings)" if project is not None
             else f"once frozen, its curation project ({rs_project_slug(dataset.stage_id)}) can allow one person to do both")
    return (f"You judged rows of spot-check {spot.pk}: another reviewer must freeze this set (four eyes); {where}.")
