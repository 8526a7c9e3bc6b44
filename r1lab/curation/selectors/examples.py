"""One example's reads: the editor's example and its steps, its revisions and status trail, the
review queue, and four eyes (who may not approve what)."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, IntegerField, JSONField, OuterRef, Q, QuerySet, Subquery, Value

from r1lab.curation import steps as step_rules
from r1lab.curation.models import Assignment, CurationProject, Example, Label, QueueCount, Revision, StatusEvent, StepLabel

# The columns of the review queue page.
REVIEW_LIST_FIELDS = ("id", "prompt", "status", "length", "accuracy", "language_score", "project__name", "project__slug", "updated_at")


# --- editor and history ---------------------------------------------------------------------------
def editor_example(*, pk: int, user) -> Example | None:
    """The editor's example in one query, with what the page needs about `user` annotated on it:
    `mine_assigned` (in their queue), `mine_label` (their label values or None), `mine_steps` (their
    step verdicts' entries or None), `mine_done` / `mine_remaining` (their queue counts in the
    example's project)."""
    counts = QueueCount.objects.filter(project=OuterRef("project_id"), user=user)
    return (
        Example.objects.select_related("project", "reviewed_by", "updated_by")
        .annotate(
            mine_assigned=Exists(Assignment.objects.filter(example=OuterRef("pk"), user=user)),
            mine_label=Subquery(Label.objects.filter(example=OuterRef("pk"), annotator=user).values("values")[:1], output_field=JSONField()),
            mine_steps=Subquery(StepLabel.objects.filter(example=OuterRef("pk"), annotator=user).values("entries")[:1], output_field=JSONField()),
            mine_done=Subquery(counts.values("done")[:1]), mine_remaining=Subquery(counts.values("remaining")[:1]),
            mine_for_user_id=Value(user.pk, output_field=IntegerField()),
        )
        .filter(pk=pk).first()
    )


@dataclass(frozen=True)
class EditorSteps:
    """The steps of an example's current reasoning with one set of verdicts on them (the editor's)."""

    split: step_rules.Split
    rows: list[dict]  # [{"index", "text", "label", "note"}]
    stale: int  # verdicts on text that is no longer a step
    first_wrong: int | None  # steps.first_wrong_step

    @property
    def first_wrong_display(self) -> str:
        if self.first_wrong is None:
            return "–"
        return "none" if self.first_wrong == -1 else str(self.first_wrong + 1)


def editor_steps(*, example: Example, entries: list[dict] | None) -> EditorSteps:
    """The steps of `example.reasoning` (split by its project's rule) with `entries` mapped onto them."""
    split = step_rules.split_steps(example.reasoning, example.project.step_split)
    mapped = step_rules.map_entries(split.hashes, entries)
    rows = [{"index": s.index, "text": s.text, "label": label, "note": note}
            for s, label, note in zip(split.steps, mapped.labels, mapped.notes)]
    return EditorSteps(split=split, rows=rows, stale=mapped.stale, first_wrong=step_rules.first_wrong_step(mapped.labels))


def example_step_labels(*, example: Example, split: step_rules.Split) -> dict:
    """Every annotator's verdicts on the example's current steps (the reviewer's view): {"annotators":
    [{"username", "stale", "first_wrong"}], "rows": [{"index", "text", "cells": [{"label", "note"}]}]},
    one cell per annotator, in the annotators' order."""
    annotators, mapped = [], []
    for username, entries in (StepLabel.objects.filter(example_id=example.pk).order_by("annotator__username")
                              .values_list("annotator__username", "entries")):
        m = step_rules.map_entries(split.hashes, entries)
        first = step_rules.first_wrong_step(m.labels)
        annotators.append({"username": username, "stale": m.stale,
                           "first_wrong": "–" if first is None else "none" if first == -1 else str(first + 1)})
        mapped.append(m)
    rows = [{"index": s.index, "text": s.text, "cells": [{"label": m.labels[s.index], "note": m.notes[s.index]} for m in mapped]}
            for s in split.steps]
    return {"annotators": annotators, "rows": rows}


def example_status_events(*, example: Example, limit: int = 5) -> QuerySet[StatusEvent]:
    """The example's latest status changes, newest first, with who made them."""
    return example.status_events.select_related("user").order_by("-created_at")[:limit]


def example_revisions(*, example: Example) -> list[Revision]:
    """Every revision of the example, newest first, with its author."""
    return list(example.revisions.select_related("author").order_by("-number"))


def example_revisions_after(*, example: Example, number: int) -> QuerySet[Revision]:
    """The revisions saved after revision `number` (what an editor based on it did not see), oldest first."""
    return Revision.objects.filter(example=example, number__gt=number).select_related("author").order_by("number")


# --- review ---------------------------------------------------------------------------------------
def review_queue(*, project: CurationProject | None) -> QuerySet[Example]:
    qs = Example.objects.filter(status=Example.Status.SUBMITTED).select_related("project")
    if project is not None:
        qs = qs.filter(project=project)
    return qs.order_by("id")


def review_queue_rows(*, project: CurationProject | None) -> QuerySet[Example]:
    """The review queue page's rows: `review_queue` with the page's columns only."""
    return review_queue(project=project).only(*REVIEW_LIST_FIELDS)


def review_queue_next_id(*, project: CurationProject | None) -> int | None:
    """The id of the first example waiting for review (in `project`, else anywhere), or None."""
    return review_queue(project=project).values_list("id", flat=True).first()


# --- four eyes ------------------------------------------------------------------------------------
def approval_refusal(*, example: Example, user) -> str | None:
    """Why `user` may not approve `example`, or None. Four eyes (issue 15): the approval comes from
    someone other than the example's author (revision 1) and its last editor. Staff included: the
    rule is about whose work it is, not about roles."""
    author_id = Revision.objects.filter(example_id=example.pk, number=1).values_list("author_id", flat=True).first()
    if author_id is not None and author_id == user.pk:
        return "You wrote this example: another reviewer must approve it."
    if example.updated_by_id is not None and example.updated_by_id == user.pk:
        return f"You made the last edit of this example (version {example.version}): another reviewer must approve it."
    return None


def own_example_ids(*, ids, user) -> set[int]:
    """Those of `ids` that `user` wrote (revision 1) or edited last: not theirs to approve."""
    return set(
        Example.objects.filter(id__in=ids)
        .filter(Q(updated_by=user) | Exists(Revision.objects.filter(example=OuterRef("pk"), number=1, author=user)))
        .values_list("id", flat=True)
    )

