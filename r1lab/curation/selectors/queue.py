"""The annotator's queue: their projects with done / remaining counts, the next example, J/K."""
from __future__ import annotations

from django.db.models import Q

from r1lab.curation.models import Assignment, CurationProject, Example, QueueCount


def queue_counts(*, user, project: CurationProject) -> dict:
    """`user`'s done / remaining in `project`: one row of QueueCount, kept by the services (no counting)."""
    row = QueueCount.objects.filter(user=user, project=project).values_list("done", "remaining").first() or (0, 0)
    return {"done": row[0], "remaining": row[1], "total": row[0] + row[1]}


def queue_projects(*, user) -> list[dict]:
    """The projects where `user` has assignments, with done / remaining counts (from QueueCount)."""
    rows = (
        QueueCount.objects.filter(user=user).filter(Q(done__gt=0) | Q(remaining__gt=0))
        .select_related("project").order_by("project__name")
    )
    return [{"project": r.project, "done": r.done, "remaining": r.remaining} for r in rows]


def queue_next(*, user, project: CurationProject) -> Example | None:
    """The next example in `user`'s queue: the oldest not-done assignment (rejected ones come back)."""
    assignment = (
        Assignment.objects.filter(user=user, project=project, done=False).order_by("example_id").only("example_id").first()
    )
    return Example.objects.filter(pk=assignment.example_id).first() if assignment else None


def queue_neighbour(*, user, example: Example, direction: int) -> int | None:
    """Id of the next (+1) / previous (-1) example assigned to `user` in the example's project (J/K)."""
    qs = Assignment.objects.filter(user=user, project_id=example.project_id)
    if direction > 0:
        qs = qs.filter(example_id__gt=example.pk).order_by("example_id")
    else:
        qs = qs.filter(example_id__lt=example.pk).order_by("-example_id")
    return qs.values_list("example_id", flat=True).first()

