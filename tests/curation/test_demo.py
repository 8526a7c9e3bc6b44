import io

import pytest

from r1lab.curation import demo
from r1lab.curation.models import CurationProject, DatasetVersion, Example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_demo_seed_is_idempotent(data_dir):
    for name in ("annotator", "reviewer", "researcher"):
        UserFactory(username=name, role=name)
    demo.seed(stdout=io.StringIO(), first_run=True)
    demo.seed(stdout=io.StringIO(), first_run=False)
    project = CurationProject.objects.get(name=demo.PROJECT)
    assert Example.objects.filter(project=project).count() == 36
    assert Example.objects.filter(project=project, accuracy=0.0).exists()  # wrong answers
    assert Example.objects.filter(project=project, language_score__lt=1.0).exists()  # language mixing
    assert Example.objects.filter(project=project, reflection_count__gt=0).exists()
    assert set(project.annotators.values_list("username", flat=True)) == {"annotator", "reviewer"}
    assert Example.objects.filter(project=project, status="submitted").exists()
    assert DatasetVersion.objects.filter(project=project).count() == 1
    # Four eyes: every approved example was approved by someone other than its author.
    approved = Example.objects.filter(project=project, status="approved")
    assert approved.exists()
    for ex in approved:
        assert ex.reviewed_by.username == "reviewer" and ex.revisions.get(number=1).author.username == "researcher"
