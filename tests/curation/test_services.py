"""Saving, revisions, conflicts, statuses and assignment, on the real database."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from r1lab.curation.selectors.queue import queue_counts, queue_next
from r1lab.curation.selectors.search import ExampleFilter, examples_filtered
from r1lab.curation.services.errors import EditConflict, TransitionError
from r1lab.curation.services.examples import BulkApproval, editor_save, example_review, example_save, example_submit, examples_bulk_approve, label_save, revision_restore
from r1lab.curation.services.projects import project_create, project_set_annotators
from r1lab.curation.models import Assignment, Example, Revision, StatusEvent
from tests.curation.conftest import make_example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_create_computes_checks_and_revision_one(project, lead):
    ex = make_example(project, lead, reasoning="2 plus 2 is 4. Wait, let me re-check: 4.", summary="4", gold_answer="4")
    assert ex.version == 1
    assert ex.format_score == 1.0
    assert ex.accuracy == 1.0
    assert ex.reflection_count >= 1
    assert ex.length == len("<think>2 plus 2 is 4. Wait, let me re-check: 4.</think><answer>4</answer>")
    rev = Revision.objects.get(example=ex)
    assert (rev.number, rev.reasoning) == (1, ex.reasoning)
    wrong = make_example(project, lead, summary="5", gold_answer="4")
    assert wrong.accuracy == 0.0
    no_gold = make_example(project, lead, gold_answer="")
    assert no_gold.accuracy is None


def test_example_create_rejects_unknown_source(project, lead):
    with pytest.raises(ValidationError):
        make_example(project, lead, source="scraped")
    assert Example.objects.count() == 0


def test_save_bumps_version_and_records_revision(project, lead):
    ex = make_example(project, lead)
    saved = example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "Two plus two is four."})
    assert saved.version == 2
    assert saved.reasoning == "Two plus two is four."
    rev = Revision.objects.get(example=ex, number=2)
    assert rev.changed_fields == ["reasoning"]
    assert rev.author == lead


def test_stale_save_conflicts_and_overwrites_nothing(project, lead):
    ex = make_example(project, lead)
    other = UserFactory(role="annotator")
    example_save(example=ex, user=other, based_on=1, changes={"reasoning": "theirs"})
    with pytest.raises(EditConflict) as info:
        example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "mine"})
    assert info.value.example.reasoning == "theirs"
    assert info.value.mine["reasoning"] == "mine"
    ex.refresh_from_db()
    assert (ex.reasoning, ex.version) == ("theirs", 2)
    assert Revision.objects.filter(example=ex).count() == 2


def test_save_without_text_change_writes_nothing(project, lead):
    ex = make_example(project, lead)
    same = example_save(example=ex, user=lead, based_on=1, changes={"reasoning": ex.reasoning})
    assert same.version == 1
    assert Revision.objects.filter(example=ex).count() == 1


def test_restore_is_a_new_revision(project, lead):
    ex = make_example(project, lead, reasoning="first")
    example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "second"})
    restored = revision_restore(example=ex, number=1, user=lead, based_on=2)
    assert (restored.reasoning, restored.version) == ("first", 3)
    assert Revision.objects.get(example=ex, number=3).note == "restored revision 1"


def test_assignment_overlap_and_queue(lead):
    project = project_create(name="Overlap", user=lead, overlap=2)
    a, b, c = (UserFactory(role="annotator") for _ in range(3))
    examples = [make_example(project, lead) for _ in range(3)]
    assert project_set_annotators(project=project, users=[a, b, c]) == 6
    for ex in examples:
        assert Assignment.objects.filter(example=ex).count() == 2
    # Balanced: each annotator has two.
    assert sorted(Assignment.objects.filter(project=project).values_list("user_id", flat=True)) == sorted([a.pk, a.pk, b.pk, b.pk, c.pk, c.pk])
    # A new example is assigned at once.
    new = make_example(project, lead)
    assert Assignment.objects.filter(example=new).count() == 2
    counts = queue_counts(user=a, project=project)
    assert counts["done"] == 0 and counts["remaining"] >= 2


def test_statuses_submit_reject_resubmit_approve(project, lead, reviewer):
    annotator = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[annotator])
    ex = make_example(project, lead)
    assert queue_next(user=annotator, project=project) == ex
    ex = editor_save(example=ex, user=annotator, based_on=1, changes={"summary": "four"},
                              label_values={"quality": "4", "correct": "yes"}, submit=True)
    assert ex.status == "submitted"
    assert queue_next(user=annotator, project=project) is None
    with pytest.raises(PermissionDenied):
        editor_save(example=ex, user=annotator, based_on=ex.version, changes={"summary": "x"}, label_values=None, submit=False)
    with pytest.raises(ValidationError):
        example_review(example=ex, user=lead, decision="reject", comment="  ")
    ex = example_review(example=ex, user=lead, decision="reject", comment="Answer must be a number.")
    assert ex.status == "rejected" and ex.review_comment == "Answer must be a number."
    assert queue_next(user=annotator, project=project) == ex  # back in the queue
    ex = editor_save(example=ex, user=annotator, based_on=ex.version, changes={"summary": "4"}, label_values=None, submit=True)
    assert ex.status == "submitted"
    ex = example_review(example=ex, user=reviewer, decision="approve")  # lead wrote it: another reviewer approves
    assert ex.status == "approved" and ex.reviewed_by == reviewer
    assert list(StatusEvent.objects.filter(example=ex).values_list("to_status", flat=True)) == ["submitted", "rejected", "submitted", "approved"]
    with pytest.raises(TransitionError):
        example_review(example=ex, user=reviewer, decision="approve")


def test_overlap_two_submits_when_both_done(lead):
    project = project_create(name="Two", user=lead, overlap=2)
    a, b = UserFactory(role="annotator"), UserFactory(role="annotator")
    project_set_annotators(project=project, users=[a, b])
    ex = make_example(project, lead)
    ex = editor_save(example=ex, user=a, based_on=1, changes={}, label_values={"quality": "5"}, submit=True)
    assert ex.status == "draft"
    ex = editor_save(example=ex, user=b, based_on=1, changes={}, label_values={"quality": "3"}, submit=True)
    assert ex.status == "submitted"


def test_conflict_rolls_back_labels_too(project, lead):
    annotator = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[annotator])
    ex = make_example(project, lead)
    example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "lead's"})
    with pytest.raises(EditConflict):
        editor_save(example=ex, user=annotator, based_on=1, changes={"reasoning": "mine"}, label_values={"quality": "2"}, submit=True)
    ex.refresh_from_db()
    assert ex.status == "draft" and ex.labels.count() == 0


def test_bad_label_values_change_nothing(project, lead):
    annotator = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[annotator])
    ex = make_example(project, lead)
    with pytest.raises(ValidationError):
        editor_save(example=ex, user=annotator, based_on=1, changes={"reasoning": "edited"}, label_values={"quality": "9"}, submit=False)
    ex.refresh_from_db()
    assert ex.version == 1 and ex.labels.count() == 0


def test_bulk_approve_only_submitted(project, lead, reviewer):
    annotator = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[annotator])
    exs = [make_example(project, lead) for _ in range(4)]
    for ex in exs[:3]:
        example_submit(example=ex, user=annotator)
    qs = examples_filtered(project=project, f=ExampleFilter())
    assert examples_bulk_approve(examples=qs, user=reviewer) == BulkApproval(approved=3, own=0)
    assert sorted(Example.objects.values_list("status", flat=True)) == ["approved", "approved", "approved", "draft"]
    with pytest.raises(PermissionDenied):
        examples_bulk_approve(examples=qs, user=annotator)


def test_label_schema_validation(lead):
    with pytest.raises(ValidationError) as info:
        project_create(name="Bad", user=lead, label_schema=[{"key": "Bad Key", "type": "scale"}, {"key": "x", "type": "nope"}])
    assert len(info.value.messages) == 2
    custom = project_create(name="Custom", user=lead, label_schema=[
        {"key": "style", "question": "Style", "type": "choice", "choices": ["terse", "verbose"]},
    ])
    ex = make_example(custom, lead)
    label = label_save(example=ex, user=lead, values={"style": "terse"})
    assert label.values == {"style": "terse"}
    with pytest.raises(ValidationError):
        label_save(example=ex, user=lead, values={"style": "purple"})
