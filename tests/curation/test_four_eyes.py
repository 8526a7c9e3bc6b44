"""Four eyes (issue 15, finding 6): nobody approves an example they wrote or edited last; an edit of
an approved example sends it back to review, out of the next frozen version until someone else
approves it again. Before: a reviewer could approve their own work, and edit an approved example,
which stayed approved and went into the next version."""
import pytest
from django.urls import reverse

from r1lab.curation.selectors.examples import review_queue
from r1lab.curation.selectors.search import ExampleFilter, examples_filtered
from r1lab.curation.services.errors import FourEyesError, TransitionError
from r1lab.curation.services.examples import BulkApproval, example_review, example_save, example_submit, examples_bulk_approve, revision_restore
from r1lab.curation.services.versions import dataset_version_freeze
from r1lab.curation.models import Example, StatusEvent
from tests.curation.conftest import make_example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def submitted(project, author, **kw):
    ex = make_example(project, author, **kw)
    return example_submit(example=ex, user=author)


def unchanged(ex):
    """The refused decision wrote nothing: `ex` (as the test holds it) is what the database has."""
    fresh = Example.objects.get(pk=ex.pk)
    assert (fresh.status, fresh.reviewed_by_id, fresh.version) == (ex.status, ex.reviewed_by_id, ex.version)
    assert StatusEvent.objects.filter(example=ex).latest("id").to_status == ex.status
    return True


def test_the_author_may_not_approve_but_may_reject(project, lead, reviewer):
    ex = submitted(project, lead)
    events = StatusEvent.objects.filter(example=ex).count()
    with pytest.raises(FourEyesError, match="You wrote this example"):
        example_review(example=ex, user=lead, decision="approve")
    assert unchanged(ex) and StatusEvent.objects.filter(example=ex).count() == events == 1
    assert example_review(example=ex, user=lead, decision="reject", comment="not good enough").status == "rejected"


def test_the_last_editor_may_not_approve_nor_may_the_author_then_a_third_reviewer_does(project, lead, reviewer):
    ex = submitted(project, lead)
    ex = example_save(example=ex, user=reviewer, based_on=ex.version, changes={"summary": "four"})
    assert ex.status == "submitted"
    with pytest.raises(FourEyesError, match="last edit"):
        example_review(example=ex, user=reviewer, decision="approve")
    with pytest.raises(FourEyesError, match="You wrote"):
        example_review(example=ex, user=lead, decision="approve")
    assert unchanged(ex)
    third = UserFactory(role="reviewer")
    assert example_review(example=ex, user=third, decision="approve").reviewed_by == third


def test_staff_are_not_exempt(project):
    admin = UserFactory(is_staff=True, is_superuser=True)
    ex = submitted(project, admin)
    with pytest.raises(FourEyesError):
        example_review(example=ex, user=admin, decision="approve")
    assert unchanged(ex)


def test_an_edit_of_an_approved_example_sends_it_back_to_review_and_out_of_the_next_version(project, lead, reviewer, data_dir):
    keep = example_review(example=submitted(project, lead, prompt="Keep?"), user=reviewer, decision="approve")
    ex = example_review(example=submitted(project, lead, prompt="Edit?"), user=reviewer, decision="approve")
    v1 = dataset_version_freeze(project=project, user=lead).version
    assert v1.example_count == 2

    # The approving reviewer edits it afterwards: it waits for review again, and says why.
    ex = example_save(example=ex, user=reviewer, based_on=ex.version, changes={"reasoning": "Quietly changed."})
    assert ex.status == "submitted"
    event = StatusEvent.objects.filter(example=ex).latest("id")
    assert (event.from_status, event.to_status, event.user) == ("approved", "submitted", reviewer)
    assert "needs review again" in event.comment
    assert ex in review_queue(project=project)

    v2 = dataset_version_freeze(project=project, user=lead).version
    assert v2.number == 2 and v2.changelog["removed"] == [ex.pk]
    assert list(v2.items.values_list("example_ref", flat=True)) == [keep.pk]

    # Neither its editor nor its author approves it; a third reviewer does, and v3 has the new text.
    for user in (reviewer, lead):
        with pytest.raises(FourEyesError):
            example_review(example=ex, user=user, decision="approve")
    example_review(example=ex, user=UserFactory(role="reviewer"), decision="approve")
    v3 = dataset_version_freeze(project=project, user=lead).version
    assert "Quietly changed." in v3.items.get(example_ref=ex.pk).completion


def test_restoring_a_revision_of_an_approved_example_also_sends_it_back(project, lead, reviewer):
    ex = make_example(project, lead, reasoning="first")
    ex = example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "second"})
    example_submit(example=ex, user=lead)
    example_review(example=ex, user=reviewer, decision="approve")
    restored = revision_restore(example=ex, number=1, user=reviewer, based_on=2)
    assert (restored.reasoning, restored.status) == ("first", "submitted")


def test_a_save_without_text_change_keeps_it_approved(project, lead, reviewer):
    ex = example_review(example=submitted(project, lead), user=reviewer, decision="approve")
    same = example_save(example=ex, user=reviewer, based_on=ex.version, changes={"reasoning": ex.reasoning})
    assert same.status == "approved"


def test_bulk_approve_leaves_the_reviewer_s_own_examples_for_someone_else(project, lead, reviewer):
    mine = [submitted(project, lead) for _ in range(2)]
    edited = example_save(example=submitted(project, reviewer), user=lead, based_on=1, changes={"summary": "4!"})
    theirs = submitted(project, reviewer)
    qs = examples_filtered(project=project, f=ExampleFilter())
    assert examples_bulk_approve(examples=qs, user=lead) == BulkApproval(approved=1, own=3)
    assert dict(Example.objects.values_list("pk", "status")) == {
        mine[0].pk: "submitted", mine[1].pk: "submitted", edited.pk: "submitted", theirs.pk: "approved"}


def test_a_decision_on_a_version_the_reviewer_did_not_see_is_refused(project, lead, reviewer):
    ex = submitted(project, lead)
    seen = ex.version
    ex = example_save(example=ex, user=UserFactory(role="reviewer"), based_on=seen, changes={"summary": "changed"})
    with pytest.raises(TransitionError, match="changed since you opened it"):
        example_review(example=ex, user=reviewer, decision="approve", version=seen)
    assert unchanged(ex)
    assert example_review(example=ex, user=reviewer, decision="approve", version=ex.version).status == "approved"


def test_editor_page_says_why_approve_is_not_available(client, project, lead, reviewer):
    ex = submitted(project, lead)
    client.force_login(lead)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'id="approve-refusal"' in html and "You wrote this example: another reviewer must approve it." in html
    assert '<button type="submit" name="decision" value="approve" class="primary" id="approve-button" disabled' in html
    assert 'id="reject-button"' in html  # rejecting one's own work is allowed
    client.force_login(reviewer)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'id="approve-refusal"' not in html and f'name="version" value="{ex.version}"' in html


def test_editor_page_warns_that_editing_an_approved_example_sends_it_back(client, project, lead, reviewer):
    ex = example_review(example=submitted(project, lead), user=reviewer, decision="approve")
    client.force_login(reviewer)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'id="approved-edit-note"' in html and "sends it back to review" in html


def test_bulk_approve_page_says_how_many_were_left_for_another_reviewer(client, project, lead, reviewer):
    submitted(project, lead)
    submitted(project, reviewer)
    client.force_login(lead)
    html = client.post(reverse("curation:bulk_approve", kwargs={"slug": project.slug}), {}, follow=True).content.decode()
    assert "Approved 1 submitted example(s)" in html
    assert "1 submitted example(s) of this selection not approved: you wrote or last edited them" in html


def test_the_one_person_rs_freeze_setting_is_off_by_default_and_set_in_the_project_form(client, project, lead):
    assert project.rs_one_person_freeze is False
    client.force_login(lead)
    url = reverse("curation:project_settings", kwargs={"slug": project.slug})
    assert 'name="rs_one_person_freeze"' in client.get(url).content.decode()
    form = {"description": "", "target_language": "en", "overlap": 1, "label_schema": '[{"key": "q", "question": "Q", "type": "bool"}]'}
    assert client.post(url, form | {"rs_one_person_freeze": "on"}).status_code == 302
    project.refresh_from_db()
    assert project.rs_one_person_freeze is True
    client.post(url, form)  # an unticked box is off
    project.refresh_from_db()
    assert project.rs_one_person_freeze is False
    client.post(reverse("curation:project_new"), form | {"name": "Small team", "rs_one_person_freeze": "on"})
    assert project.__class__.objects.get(name="Small team").rs_one_person_freeze is True
