"""Step labels through the editor (issue 18): saved by step text, refused whole when bad, kept
through edits, shown to reviewers and not to other annotators."""
import pytest
from django.urls import reverse

from r1lab.curation.models import Label, StepLabel
from r1lab.curation.selectors.examples import editor_steps
from r1lab.curation.services.examples import example_save
from r1lab.curation.services.projects import project_set_annotators, project_update
from r1lab.curation.steps import split_steps
from tests.curation.conftest import make_example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

REASONING = "Add 2 and 2.\n\nThat is 5.\n\nSo the answer is 5."


@pytest.fixture
def annotator(project):
    user = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[user])
    return user


def _post(client, ex, **fields):
    split = split_steps(ex.reasoning, ex.project.step_split)
    data = {"based_on": ex.version, "reasoning": ex.reasoning, "summary": ex.summary, "action": "save",
            "steps_version": ex.version, "steps_digest": split.digest, **fields}
    return client.post(reverse("curation:editor", kwargs={"pk": ex.pk}), data)


def test_editor_saves_verdicts_and_notes_by_step_text(client, project, lead, annotator):
    ex = make_example(project, lead, reasoning=REASONING)
    client.force_login(annotator)
    resp = _post(client, ex, step_0="correct", step_1="incorrect", step_note_1="2 + 2 is 4", step_2="", label_quality="3")
    assert resp.status_code == 302, resp.content.decode()[:2000]
    saved = StepLabel.objects.get(example=ex, annotator=annotator)
    split = split_steps(REASONING, "auto")
    assert saved.entries == [
        {"h": split.hashes[0], "label": "correct", "note": ""},
        {"h": split.hashes[1], "label": "incorrect", "note": "2 + 2 is 4"},
        {"h": split.hashes[2], "label": "", "note": ""},
    ]
    assert (saved.rule, saved.version) == ("paragraphs", 1)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'name="step_1" value="incorrect" checked' in html and 'value="2 + 2 is 4"' in html
    assert '<strong id="first-wrong">2</strong>' in html


def test_bad_step_fields_are_refused_and_change_nothing(client, project, lead, annotator):
    ex = make_example(project, lead, reasoning=REASONING)
    client.force_login(annotator)
    for fields in ({"step_0": "wrong-ish"}, {"step_7": "correct"}, {"step_x": "correct"}, {"step_note_0": "n" * 501},
                   {"steps_version": "abc"}, {"steps_version": "9"}):
        resp = _post(client, ex, label_quality="4", **fields)
        assert resp.status_code == 400, fields
        assert "Steps:" in resp.content.decode()
    assert not StepLabel.objects.exists() and not Label.objects.exists()  # the labels were refused with them


def test_a_changed_split_rule_refuses_the_stale_form(client, project, lead, annotator):
    ex = make_example(project, lead, reasoning=REASONING)
    client.force_login(annotator)
    digest = split_steps(REASONING, "auto").digest
    project_update(project=project, description="", target_language="en", overlap=1, label_schema=project.label_schema,
                   step_split="sentences")
    resp = _post(client, ex, steps_digest=digest, step_0="correct")
    assert resp.status_code == 400 and "split rule was changed" in resp.content.decode()
    assert not StepLabel.objects.exists()


def test_clearing_every_verdict_removes_the_row(client, project, lead, annotator):
    ex = make_example(project, lead, reasoning=REASONING)
    client.force_login(annotator)
    assert _post(client, ex, step_0="neutral").status_code == 302
    assert StepLabel.objects.count() == 1
    assert _post(client, ex, step_0="").status_code == 302
    assert not StepLabel.objects.exists()


def test_an_edit_of_one_step_leaves_the_others_verdicts(client, project, lead, annotator):
    ex = make_example(project, lead, reasoning=REASONING)
    client.force_login(annotator)
    _post(client, ex, step_0="correct", step_1="incorrect", step_2="correct")
    ex = example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "Add 2 and 2.\n\nThat is 4.\n\nSo the answer is 5."})
    entries = StepLabel.objects.get(example=ex).entries
    steps = editor_steps(example=ex, entries=entries)
    assert [r["label"] for r in steps.rows] == ["correct", "", "correct"]
    assert steps.stale == 1 and steps.first_wrong is None
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'id="steps-stale"' in html


def test_reviewers_see_every_annotators_verdicts_annotators_only_their_own(client, project, lead, annotator):
    other = UserFactory(role="annotator")
    project_update(project=project, description="", target_language="en", overlap=2, label_schema=project.label_schema)
    project_set_annotators(project=project, users=[annotator, other])
    ex = make_example(project, lead, reasoning=REASONING)
    client.force_login(annotator)
    _post(client, ex, step_0="correct", step_1="incorrect", step_note_1="<b>sum</b> is 4", step_2="correct")
    client.force_login(other)
    _post(client, ex, step_0="correct", step_1="correct", step_2="correct")
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'id="step-reviews"' not in html and "&lt;b&gt;sum&lt;/b&gt;" not in html  # blind: not someone else's
    reviewer = UserFactory(role="reviewer")
    client.force_login(reviewer)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'id="step-reviews"' in html
    assert "“&lt;b&gt;sum&lt;/b&gt; is 4”" in html and "<b>sum</b>" not in html  # annotator text is escaped
    table = html[html.index('id="step-reviews"'):]
    assert table.index(annotator.username) < table.index("First wrong step")
    row = table[table.index("First wrong step"):table.index("</tr>", table.index("First wrong step"))]
    assert "<td>2" in row and "<td>none" in row  # annotator: step 2; other: none


def test_the_split_rule_and_licence_are_project_settings(client, project, lead):
    client.force_login(lead)
    url = reverse("curation:project_settings", kwargs={"slug": project.slug})
    form = {"description": "", "target_language": "en", "overlap": 1, "label_schema": '[{"key": "q", "question": "Q", "type": "bool"}]'}
    assert client.post(url, form | {"step_split": "sentences", "license": "cc-by-4.0"}).status_code == 302
    project.refresh_from_db()
    assert (project.step_split, project.license) == ("sentences", "cc-by-4.0")
    for bad in ({"step_split": "words"}, {"license": "Not a licence!"}):
        html = client.post(url, form | {"step_split": "lines", "license": "mit"} | bad).content.decode()
        assert "errorlist" in html
        project.refresh_from_db()
        assert (project.step_split, project.license) == ("sentences", "cc-by-4.0")  # nothing changed
    assert client.post(url, form).status_code == 302  # a form without them leaves the rule as it is
    project.refresh_from_db()
    assert project.step_split == "sentences"
