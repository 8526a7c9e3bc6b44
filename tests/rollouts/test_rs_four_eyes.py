"""Four eyes on the rejection-sampling workbench (issue 15, finding 6): whoever judged the spot-check
does not also freeze the set, unless its curation project allows one person to do both; a frozen
example edited since is not re-approved by the next freeze. Before: one reviewer could spot-check
and freeze a set alone, and every freeze re-approved every RS example of the project."""
import pytest
from django.urls import reverse

from r1lab.curation import services as curation
from r1lab.curation.models import DatasetVersion, Example
from r1lab.curation.services.examples import example_save
from r1lab.rollouts.rs import selectors, services
from r1lab.rollouts.models import RSDataset
from tests.rollouts.rs_helpers import make_rs_stage

pytestmark = pytest.mark.django_db


def spot_checked(stage, user, verdicts=("good", "good")):
    ds = RSDataset.objects.filter(stage=stage).first() or services.rs_dataset_load(stage=stage, user=None)
    check = services.spot_check_create(dataset=ds, size=len(verdicts), user=user, seed=1)
    for item, verdict in zip(check.items.order_by("position"), verdicts):
        services.spot_check_mark(item=item, verdict=verdict, user=user)
    return ds


def test_the_spot_checker_may_not_freeze_the_set_and_the_page_says_why(tmp_path, client, make_user):
    stage, _ = make_rs_stage(tmp_path)
    reviewer = make_user("reviewer")
    ds = spot_checked(stage, reviewer)
    with pytest.raises(curation.FourEyesError, match="another reviewer must freeze"):
        services.rs_dataset_freeze(dataset=ds, user=reviewer)
    assert not DatasetVersion.objects.exists() and not Example.objects.exists()

    client.force_login(reviewer)
    page = client.get(reverse("rollouts:rs", args=[stage.pk])).content.decode()
    assert 'id="freeze-refusal"' in page and f"You judged rows of spot-check {ds.spot_checks.get().pk}" in page
    assert 'id="freeze-button" disabled' in page
    r = client.post(reverse("rollouts:rs_freeze", args=[stage.pk]), follow=True)
    assert "Not frozen: You judged rows" in r.content.decode()
    assert not DatasetVersion.objects.exists()

    # Another reviewer freezes it: the examples are nobody's text (the model's), approved by them.
    other = make_user("reviewer")
    client.force_login(other)
    assert 'id="freeze-refusal"' not in client.get(reverse("rollouts:rs", args=[stage.pk])).content.decode()
    version = services.rs_dataset_freeze(dataset=ds, user=other)
    examples = Example.objects.filter(project=version.project)
    assert version.example_count == 4 and set(examples.values_list("status", flat=True)) == {"approved"}
    assert set(examples.values_list("reviewed_by", flat=True)) == {other.pk}
    assert set(examples.values_list("revisions__author", flat=True)) == {None}


def test_staff_are_not_exempt(tmp_path, make_user):
    stage, _ = make_rs_stage(tmp_path)
    admin = make_user("staff")
    ds = spot_checked(stage, admin)
    with pytest.raises(curation.FourEyesError):
        services.rs_dataset_freeze(dataset=ds, user=admin)
    assert not DatasetVersion.objects.exists()


def test_a_project_that_allows_it_lets_one_person_spot_check_and_freeze(tmp_path, make_user):
    stage, _ = make_rs_stage(tmp_path)
    reviewer = make_user("reviewer")
    curation.project_create(name="Small team RS", slug=selectors.rs_project_slug(stage.pk), user=reviewer, rs_one_person_freeze=True)
    ds = spot_checked(stage, reviewer)
    assert selectors.rs_freeze_refusal(dataset=ds, user=reviewer) is None
    version = services.rs_dataset_freeze(dataset=ds, user=reviewer)
    assert version.example_count == 4 and version.project.slug == selectors.rs_project_slug(stage.pk)


def test_an_rs_example_edited_after_a_freeze_is_not_re_approved_by_the_next_one(tmp_path, make_user):
    stage, _ = make_rs_stage(tmp_path)
    checker, freezer, editor = make_user("annotator"), make_user("reviewer"), make_user("reviewer")
    ds = spot_checked(stage, checker)
    v1 = services.rs_dataset_freeze(dataset=ds, user=freezer)
    ex = Example.objects.filter(project=v1.project).first()
    ex = example_save(example=ex, user=editor, based_on=ex.version, changes={"reasoning": "edited by hand"})
    assert ex.status == "submitted"
    ds = spot_checked(stage, checker, verdicts=("good",))
    v2 = services.rs_dataset_freeze(dataset=ds, user=freezer)
    assert Example.objects.get(pk=ex.pk).status == "submitted"
    assert v2.number == 2 and v2.changelog["removed"] == [ex.pk] and v2.example_count == 3
