"""Curation's bad-input table (the counterpart of tests/tracking/test_api.py's BAD_INPUTS for the
ingest API): each refused request through the pages gets a clear message and changes nothing.
Issue 15 added the four-eyes cases: before it, every one of them was accepted."""
import pytest
from django.urls import reverse

from r1lab.curation.services.examples import example_save, example_submit
from r1lab.curation.models import DatasetVersion, Example, StatusEvent
from r1lab.rollouts.rs import services as rollouts
from r1lab.rollouts.models import SpotCheckItem
from tests.curation.conftest import make_example
from tests.factories import UserFactory
from tests.rollouts.rs_helpers import make_rs_stage

pytestmark = pytest.mark.django_db


def _submitted(project, author):
    return example_submit(example=make_example(project, author), user=author)


def _review(project, lead, tmp_path, edit_by_user=False):
    """(user, url, example): a submitted example written by `lead`, reviewed by `user`."""
    ex = _submitted(project, lead)
    user = lead
    if edit_by_user:
        user = UserFactory(role="reviewer")
        example_save(example=ex, user=user, based_on=ex.version, changes={"summary": "edited"})
    return user, reverse("curation:review_example", kwargs={"pk": ex.pk}), ex


def _stale(project, lead, tmp_path):
    ex = _submitted(project, lead)
    example_save(example=ex, user=lead, based_on=1, changes={"summary": "changed after the reviewer looked"})
    return UserFactory(role="reviewer"), reverse("curation:review_example", kwargs={"pk": ex.pk}), ex


def _other_reviewer(project, lead, tmp_path):
    ex = _submitted(project, lead)
    return UserFactory(role="reviewer"), reverse("curation:review_example", kwargs={"pk": ex.pk}), ex


def _bulk(project, lead, tmp_path):
    ex = _submitted(project, lead)
    return lead, reverse("curation:bulk_approve", kwargs={"slug": project.slug}), ex


def _rs_freeze(project, lead, tmp_path):
    stage, _ = make_rs_stage(tmp_path)
    ds = rollouts.rs_dataset_load(stage=stage, user=None)
    check = rollouts.spot_check_create(dataset=ds, size=2, user=lead, seed=1)
    for item in SpotCheckItem.objects.filter(spot_check=check):
        rollouts.spot_check_mark(item=item, verdict="good", user=lead)
    return lead, reverse("rollouts:rs_freeze", args=[stage.pk]), None


SETUPS = {"author": _review, "last editor": lambda p, l, t: _review(p, l, t, edit_by_user=True), "stale": _stale,
          "other reviewer": _other_reviewer, "bulk": _bulk, "rs freeze": _rs_freeze}

BAD_INPUTS = [
    # (case, setup, POST data, message fragment)
    ("approve: no decision", "other reviewer", {}, "Choose approve or reject."),
    ("approve: unknown decision", "other reviewer", {"decision": "maybe"}, "Choose approve or reject."),
    ("reject without a comment", "other reviewer", {"decision": "reject", "comment": "  "}, "Say why you reject it"),
    ("approve: version not a number", "other reviewer", {"decision": "approve", "version": "two"}, "version: Enter a whole number."),
    # issue 15: four eyes
    ("approve one's own example", "author", {"decision": "approve"}, "You wrote this example: another reviewer must approve it."),
    ("approve after one's own edit", "last editor", {"decision": "approve"}, "You made the last edit of this example (version 2)"),
    ("approve a version one did not see", "stale", {"decision": "approve", "version": "1"}, "changed since you opened it (version 1; it is now at version 2)"),
    ("bulk approve one's own examples", "bulk", {}, "1 submitted example(s) of this selection not approved: you wrote or last edited them"),
    ("freeze an RS set one spot-checked", "rs freeze", {}, "Not frozen: You judged rows of spot-check"),
]


def _state():
    return (sorted(Example.objects.values_list("pk", "status", "version", "reviewed_by")),
            StatusEvent.objects.count(), DatasetVersion.objects.count())


@pytest.mark.parametrize("case,setup,data,fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_with_a_message_and_changes_nothing(client, project, lead, tmp_path, settings, case, setup, data, fragment):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    user, url, _ = SETUPS[setup](project, lead, tmp_path)
    client.force_login(user)
    before = _state()
    r = client.post(url, data)
    assert r.status_code == 302, (case, r.status_code)
    page = client.get(r["Location"]).content.decode()
    assert fragment in page.replace("&#x27;", "'"), case
    assert _state() == before, case
