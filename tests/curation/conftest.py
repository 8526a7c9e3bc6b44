import pytest

from r1lab.curation.services.examples import example_create
from r1lab.curation.services.projects import project_create
from tests.factories import UserFactory


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    return settings.R1LAB_DATA_DIR


@pytest.fixture
def lead(db):
    return UserFactory(role="reviewer")


@pytest.fixture
def reviewer(db):
    """A second reviewer: four eyes, the lead never approves what they wrote or edited last."""
    return UserFactory(role="reviewer")


@pytest.fixture
def project(lead):
    return project_create(name="Cold start math", user=lead)


def make_example(project, user, **kw):
    values = dict(prompt="What is 2+2?", reasoning="2 plus 2 is 4. Wait, let me check: yes, 4.", summary="4",
                  gold_answer="4", language="en", source="manual")
    values.update(kw)
    return example_create(project=project, user=user, **values)
