"""Project reads: the list, status counts, who annotates (and who could), recent imports.
(Agreement between annotators: selectors.agreement.)"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet

from r1lab.accounts.permissions import ANNOTATOR, REVIEWER
from r1lab.curation.models import CurationProject, Example, ImportJob

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
