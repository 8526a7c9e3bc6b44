"""An example's life: create, edit (conditional saves, revisions, labels), submit, review.

Every change to an example's text is `example_save` (a conditional UPDATE on `version` plus a
Revision); status changes go through `example_submit` / `example_review`. Four eyes: nobody
approves an example they wrote or edited last (selectors.examples.approval_refusal).
"""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from r1lab.accounts.permissions import can
from r1lab.curation import labels
from r1lab.curation.checks import compute_checks
from r1lab.curation.models import TEXT_FIELDS, Assignment, CurationProject, Example, Label, Revision, StatusEvent
from r1lab.curation.selectors.examples import approval_refusal, own_example_ids
from r1lab.curation.services.bulk import BULK_BATCH
from r1lab.curation.services.errors import EditConflict, FourEyesError, TransitionError
from r1lab.curation.services.projects import assignments_fill
from r1lab.curation.services.queue_counts import queue_counts_add
from r1lab.curation.services.step_labels import StepValues, step_labels_save


def _checked_fields(values: dict) -> dict:
    return compute_checks(
        reasoning=values["reasoning"], summary=values["summary"], gold_answer=values["gold_answer"], language=values["language"],
    ).as_fields()


def example_create(
    *, project: CurationProject, prompt: str, reasoning: str, summary: str, gold_answer: str = "",
    language: str = "en", source: str, source_ref: dict | None = None, user, tags: list[str] | None = None,
) -> Example:
    """A new draft example (revision 1), assigned to the project's annotators up to `overlap`.

    The rollout browser calls this to send a completion to curation (`source="rollout"`).
    """
    if source not in Example.Source.values:
        raise ValidationError(f"source must be one of {', '.join(Example.Source.values)}")
    if not prompt.strip():
        raise ValidationError("The prompt is empty.")
    values = {"prompt": prompt, "reasoning": reasoning, "summary": summary, "gold_answer": gold_answer, "language": language or "en"}
    with transaction.atomic():
        example = Example.objects.create(
            project=project, source=source, source_ref=source_ref, tags=list(tags or []), updated_by=user,
            **values, **_checked_fields(values),
        )
        Revision.objects.create(example=example, number=1, author=user, note=f"created ({source})", changed_fields=list(TEXT_FIELDS), **values)
        assignments_fill(project=project, example_ids=[example.pk])
    return example


def example_can_edit(*, user, example: Example) -> bool:
    if can(user, "curation.review"):
        return True
    if not can(user, "curation.annotate") or example.status in (Example.Status.APPROVED, Example.Status.SUBMITTED):
        return False
    assigned = getattr(example, "mine_assigned", None)  # annotated by selectors.examples.editor_example for this user
    if assigned is not None and getattr(example, "mine_for_user_id", None) == user.pk:
        return assigned
    return Assignment.objects.filter(example=example, user=user).exists()


def example_save(*, example: Example, user, based_on: int, changes: dict, note: str = "save") -> Example:
    """Save text `changes` made on top of version `based_on`; a Revision records it.

    The write is `UPDATE … WHERE id = … AND version = based_on`: when someone saved in between,
    no row matches, nothing is written, and EditConflict carries the current example. A save
    that changes no text (relative to `based_on`) writes nothing and returns the current example.
    A text change to an approved example sends it back to review (four eyes: what goes into the
    next frozen version is what someone other than its last editor approved).
    """
    changes = {k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in changes.items() if k in TEXT_FIELDS}
    with transaction.atomic():
        base = Revision.objects.filter(example_id=example.pk, number=based_on).first()
        if base is None:
            current = Example.objects.get(pk=example.pk)
            raise EditConflict(example=current, based_on=based_on, mine=changes)
        changed = [k for k, v in changes.items() if getattr(base, k) != v]
        if not changed:
            # No text of mine to write, so nothing can be overwritten (labels never conflict).
            return Example.objects.get(pk=example.pk)
        values = {f: getattr(base, f) for f in TEXT_FIELDS} | {k: changes[k] for k in changed}
        if not values["prompt"].strip():
            raise ValidationError("The prompt may not be empty.")
        now = timezone.now()
        updated = Example.objects.filter(pk=example.pk, version=based_on).update(
            **values, **_checked_fields(values), version=F("version") + 1, updated_at=now, updated_by=user,
        )
        if updated == 0:
            current = Example.objects.get(pk=example.pk)
            raise EditConflict(example=current, based_on=based_on, mine=changes)
        Revision.objects.create(example_id=example.pk, number=based_on + 1, author=user, note=note[:200], changed_fields=changed, **values)
        # The row is locked by the UPDATE above: no review lands between it and this one.
        if Example.objects.filter(pk=example.pk, status=Example.Status.APPROVED).update(status=Example.Status.SUBMITTED):
            StatusEvent.objects.create(
                example_id=example.pk, user=user, from_status=Example.Status.APPROVED, to_status=Example.Status.SUBMITTED,
                comment=f"edited after approval (version {based_on + 1}): needs review again",
            )
        return Example.objects.get(pk=example.pk)


def revision_restore(*, example: Example, number: int, user, based_on: int) -> Example:
    """Make revision `number`'s text the current text, as a new revision (history is kept)."""
    revision = Revision.objects.get(example=example, number=number)
    return example_save(
        example=example, user=user, based_on=based_on, note=f"restored revision {number}",
        changes={f: getattr(revision, f) for f in TEXT_FIELDS},
    )


def label_save(*, example: Example, user, values: dict) -> Label:
    """Store `user`'s answers (raw form strings are cleaned against the project's label set)."""
    clean = labels.values_clean(example.project.label_schema, values)
    label, _ = Label.objects.update_or_create(example=example, annotator=user, defaults={"values": clean})
    return label


def _set_status(example: Example, *, to: str, user, comment: str = "", allowed_from: tuple[str, ...], extra: dict | None = None) -> Example:
    updated = Example.objects.filter(pk=example.pk, status__in=allowed_from).update(status=to, updated_at=timezone.now(), **(extra or {}))
    if not updated:
        current = Example.objects.get(pk=example.pk)
        raise TransitionError(f"Example {example.pk} is {current.status}; it cannot become {to} from there.")
    StatusEvent.objects.create(example=example, user=user, from_status=example.status, to_status=to, comment=comment)
    return Example.objects.get(pk=example.pk)


def example_submit(*, example: Example, user) -> Example:
    """`user` is done with the example. It becomes `submitted` once all its annotators are done."""
    with transaction.atomic():
        example = Example.objects.select_for_update().get(pk=example.pk)
        if example.status not in (Example.Status.DRAFT, Example.Status.REJECTED):
            raise TransitionError(f"Example {example.pk} is {example.status}; only drafts and rejected examples can be submitted.")
        flipped = Assignment.objects.filter(example=example, user=user, done=False).update(done=True, done_at=timezone.now())
        queue_counts_add(deltas={(example.project_id, user.pk): (flipped, -flipped)})
        if Assignment.objects.filter(example=example, done=False).exists():
            return example  # waiting for the other annotators (overlap > 1)
        return _set_status(example, to=Example.Status.SUBMITTED, user=user, allowed_from=(Example.Status.DRAFT, Example.Status.REJECTED))


def editor_save(
    *, example: Example, user, based_on: int, changes: dict, label_values: dict | None, submit: bool,
    step_values: StepValues | None = None,
) -> Example:
    """The editor's one action: text (conditional), labels, step labels, and optionally submit. All or nothing."""
    if not example_can_edit(user=user, example=example):
        raise PermissionDenied("You may not edit this example.")
    with transaction.atomic():
        example = example_save(example=example, user=user, based_on=based_on, changes=changes, note="submit" if submit else "save")
        if label_values is not None:
            label_save(example=example, user=user, values=label_values)
        if step_values is not None:
            step_labels_save(example=example, user=user, values=step_values)
        if submit:
            example = example_submit(example=example, user=user)
    return example


def example_review(*, example: Example, user, decision: str, comment: str = "", version: int | None = None) -> Example:
    """Approve, or reject with a comment (the example goes back to its annotators' queues).

    Four eyes: `user` may not approve an example they wrote or edited last (FourEyesError; they
    may reject it). `version`, when given, is the version the reviewer looked at: a decision on an
    example that changed since is refused (TransitionError), so nobody approves unseen text.
    """
    if not can(user, "curation.review"):
        raise PermissionDenied("Only reviewers approve or reject.")
    comment = comment.strip()
    with transaction.atomic():
        example = Example.objects.select_for_update().get(pk=example.pk)
        if version is not None and example.version != version:
            raise TransitionError(
                f"Example {example.pk} changed since you opened it (version {version}; it is now at version {example.version}): "
                "look at it again before deciding."
            )
        if decision == "approve":
            refusal = approval_refusal(example=example, user=user)
            if refusal:
                raise FourEyesError(refusal)
            return _set_status(
                example, to=Example.Status.APPROVED, user=user, comment=comment, allowed_from=(Example.Status.SUBMITTED,),
                extra={"reviewed_by": user, "reviewed_at": timezone.now(), "review_comment": comment},
            )
        if decision == "reject":
            if not comment:
                raise ValidationError("Say why you reject it: the comment goes back to the annotator.")
            example = _set_status(
                example, to=Example.Status.REJECTED, user=user, comment=comment, allowed_from=(Example.Status.SUBMITTED,),
                extra={"reviewed_by": user, "reviewed_at": timezone.now(), "review_comment": comment},
            )
            # Back to every annotator's queue: their done assignments become remaining again.
            # (The example row is locked by the status UPDATE above, so no submit runs in between.)
            was_done = list(Assignment.objects.filter(example=example, done=True).values_list("user_id", flat=True))
            Assignment.objects.filter(example=example, done=True).update(done=False, done_at=None)
            queue_counts_add(deltas={(example.project_id, uid): (-1, 1) for uid in was_done})
            return example
    raise ValidationError(f"Unknown decision {decision!r}.")


@dataclass(frozen=True)
class BulkApproval:
    approved: int
    own: int  # submitted examples of the selection that `user` wrote or edited last: left for another reviewer


def examples_bulk_approve(*, examples, user, comment: str = "") -> BulkApproval:
    """Approve every *submitted* example of `examples` (a filtered queryset) that `user` neither
    wrote nor edited last (four eyes: those are left submitted, and counted)."""
    if not can(user, "curation.review"):
        raise PermissionDenied("Only reviewers approve.")
    now = timezone.now()
    with transaction.atomic():
        ids = list(examples.filter(status=Example.Status.SUBMITTED).values_list("id", flat=True))
        approved = own = 0
        for start in range(0, len(ids), BULK_BATCH):
            chunk = ids[start:start + BULK_BATCH]
            # Conditional again: one that changed status meanwhile is not touched.
            locked = list(Example.objects.filter(id__in=chunk, status=Example.Status.SUBMITTED).select_for_update().values_list("id", flat=True))
            mine = own_example_ids(ids=locked, user=user)  # read after the lock: no edit in between
            own += len(mine)
            locked = [i for i in locked if i not in mine]
            Example.objects.filter(id__in=locked).update(
                status=Example.Status.APPROVED, reviewed_by=user, reviewed_at=now, review_comment=comment, updated_at=now,
            )
            StatusEvent.objects.bulk_create([
                StatusEvent(example_id=i, user=user, from_status=Example.Status.SUBMITTED, to_status=Example.Status.APPROVED, comment=comment or "bulk approve")
                for i in locked
            ])
            approved += len(locked)
    return BulkApproval(approved=approved, own=own)

