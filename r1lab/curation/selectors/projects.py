"""Project reads: the list, status counts, who annotates (and who could), recent imports, and
the agreement between annotators' labels."""
from __future__ import annotations

from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet

from r1lab.accounts.permissions import ANNOTATOR, REVIEWER
from r1lab.curation import agreement
from r1lab.curation.models import CurationProject, Example, ImportJob, Label

# The roles whose users can be made annotators of a project.
ANNOTATOR_GROUPS = [ANNOTATOR, REVIEWER]


def project_list() -> QuerySet[CurationProject]:
    return CurationProject.objects.all()


def project_status_counts(*, project: CurationProject) -> dict[str, int]:
    counts = dict(Example.objects.filter(project=project).values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {s: counts.get(s, 0) for s in Example.Status.values}


def project_approved_count(*, project: CurationProject) -> int:
    """How many examples a freeze would take now."""
    return Example.objects.filter(project=project, status=Example.Status.APPROVED).count()


def project_annotators(*, project: CurationProject) -> QuerySet:
    return project.annotators.order_by("username")


def annotator_candidates() -> QuerySet:
    """Active users who may annotate (annotators and reviewers), for a project's annotator picker."""
    return get_user_model().objects.filter(groups__name__in=ANNOTATOR_GROUPS, is_active=True).distinct().order_by("username")


def annotator_users(*, ids: list[int]) -> QuerySet:
    """Those of the users `ids` who may annotate (annotators and reviewers); the others are left out."""
    return get_user_model().objects.filter(pk__in=ids, groups__name__in=ANNOTATOR_GROUPS).distinct()


def project_recent_imports(*, project: CurationProject, limit: int = 5) -> QuerySet[ImportJob]:
    return project.imports.order_by("-created_at")[:limit]


# --- agreement ------------------------------------------------------------------------------------
def project_agreement(*, project: CurationProject, worst: int = 50) -> dict:
    """Per-label agreement over examples labelled by 2+ annotators, and the widest disagreements.

    Cohen's κ when exactly two annotators labelled the project's shared examples, Krippendorff's α
    otherwise (nominal for yes/no and choices, interval for scales; α is given for two as well).
    """
    schema = [q for q in project.label_schema if q["type"] in ("scale", "bool", "choice")]
    shared = (
        Label.objects.filter(example__project=project).values("example_id").annotate(n=Count("id")).filter(n__gte=2).values("example_id")
    )
    units: dict[int, dict[int, dict]] = defaultdict(dict)
    for ex_id, annotator_id, values in Label.objects.filter(example_id__in=shared).values_list("example_id", "annotator_id", "values"):
        units[ex_id][annotator_id] = values or {}
    annotators = sorted({a for coders in units.values() for a in coders})
    per_label = []
    spread: dict[int, float] = defaultdict(float)
    for q in schema:
        key = q["key"]
        by_unit = {ex: {a: v.get(key) for a, v in coders.items() if v.get(key) is not None} for ex, coders in units.items()}
        by_unit = {ex: coders for ex, coders in by_unit.items() if len(coders) >= 2}
        metric = "interval" if q["type"] == "scale" else "nominal"
        kappa = None
        if len(annotators) == 2:
            a, b = annotators
            kappa = agreement.cohen_kappa([(c[a], c[b]) for c in by_unit.values() if a in c and b in c])
        alpha = agreement.krippendorff_alpha(by_unit, metric=metric)
        per_label.append({
            "key": key, "question": q["question"], "type": q["type"], "units": len(by_unit),
            "method": "Cohen's κ" if len(annotators) == 2 else f"Krippendorff's α ({metric})",
            "value": kappa if len(annotators) == 2 else alpha, "alpha": alpha, "kappa": kappa,
        })
        for ex, coders in by_unit.items():
            spread[ex] += agreement.disagreement(list(coders.values()), q["type"], q.get("min", 1), q.get("max", 5))
    worst_ids = [ex for ex, s in sorted(spread.items(), key=lambda kv: (-kv[1], kv[0])) if s > 0][:worst]
    examples = Example.objects.in_bulk(worst_ids)
    return {
        "annotators": len(annotators), "units": len(units), "labels": per_label,
        "worst": [{"example": examples[i], "spread": round(spread[i], 3), "labels": units[i]} for i in worst_ids if i in examples],
    }

