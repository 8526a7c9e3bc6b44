"""The pages through Django's test client: roles, the editor's save/conflict, checks, import, search."""
import json

import pytest
from django.urls import reverse

from r1lab import celery_app
from r1lab.curation.services.examples import example_review, example_save, example_submit
from r1lab.curation.services.projects import project_set_annotators
from r1lab.curation.models import Example, ImportJob
from tests.curation.conftest import make_example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotated(project, lead):
    annotator = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[annotator])
    ex = make_example(project, lead)
    return annotator, ex


def test_pages_render_for_their_roles(client, project, lead, annotated, data_dir):
    annotator, ex = annotated
    client.force_login(lead)
    for name, kwargs in [
        ("curation:index", {}), ("curation:project", {"slug": project.slug}), ("curation:examples", {"slug": project.slug}),
        ("curation:agreement", {"slug": project.slug}), ("curation:versions", {"slug": project.slug}),
        ("curation:project_settings", {"slug": project.slug}), ("curation:import_new", {"slug": project.slug}),
        ("curation:review", {}), ("curation:editor", {"pk": ex.pk}), ("curation:history", {"pk": ex.pk}),
        ("curation:project_new", {}), ("curation:queue", {}),
    ]:
        assert client.get(reverse(name, kwargs=kwargs)).status_code == 200, name
    viewer = UserFactory(role="viewer")
    client.force_login(viewer)
    page = client.get(reverse("curation:editor", kwargs={"pk": ex.pk}))
    assert page.status_code == 200 and b"Read only" in page.content
    assert client.post(reverse("curation:editor", kwargs={"pk": ex.pk}), {"based_on": 1, "reasoning": "x", "summary": "y"}).status_code == 403
    assert client.get(reverse("curation:import_new", kwargs={"slug": project.slug})).status_code == 403
    client.force_login(annotator)
    assert client.post(reverse("curation:review_example", kwargs={"pk": ex.pk}), {"decision": "approve"}).status_code == 403


def test_untrusted_text_is_escaped_in_html(client, project, lead):
    ex = make_example(project, lead, prompt="<script>alert(1)</script>", reasoning='<img src=x onerror="alert(2)">')
    client.force_login(lead)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<img src=x onerror' not in html


def test_editor_save_then_stale_save_gets_conflict_page(client, annotated, lead):
    annotator, ex = annotated
    client.force_login(annotator)
    url = reverse("curation:editor", kwargs={"pk": ex.pk})
    ok = client.post(url, {"based_on": 1, "reasoning": "mine, first", "summary": "4", "label_quality": "4", "action": "save"})
    assert ok.status_code == 302
    stale = client.post(url, {"based_on": 1, "reasoning": "mine, stale", "summary": "4", "action": "save"})
    assert stale.status_code == 409
    html = stale.content.decode()
    assert "Edit conflict" in html and "mine, first" in html and "mine, stale" in html
    assert "<del>first</del>" in html.replace("first,", "first") or "<ins>" in html
    ex.refresh_from_db()
    assert ex.reasoning == "mine, first" and ex.version == 2


def test_submit_moves_to_next_in_queue(client, annotated, project, lead):
    annotator, ex = annotated
    second = make_example(project, lead)
    client.force_login(annotator)
    resp = client.post(reverse("curation:editor", kwargs={"pk": ex.pk}),
                       {"based_on": 1, "reasoning": ex.reasoning, "summary": "4", "label_quality": "5", "action": "submit"})
    assert resp.status_code == 302 and resp["Location"] == reverse("curation:queue_next", kwargs={"slug": project.slug})
    assert client.get(resp["Location"])["Location"] == reverse("curation:editor", kwargs={"pk": second.pk})
    ex.refresh_from_db()
    assert ex.status == "submitted"


def test_invalid_label_is_400_and_keeps_text(client, annotated):
    annotator, ex = annotated
    client.force_login(annotator)
    resp = client.post(reverse("curation:editor", kwargs={"pk": ex.pk}),
                       {"based_on": 1, "reasoning": "typed text", "summary": "4", "label_quality": "7", "action": "save"})
    assert resp.status_code == 400
    assert "typed text" in resp.content.decode()
    ex.refresh_from_db()
    assert ex.version == 1


def test_checks_endpoint(client, annotated):
    annotator, ex = annotated
    client.force_login(annotator)
    resp = client.post(reverse("curation:checks", kwargs={"pk": ex.pk}), {"reasoning": "Wait. 四 is 4", "summary": "4"})
    data = resp.json()
    assert data["accuracy"] == 1.0 and data["reflection_count"] == 1
    assert data["off_language"]["reasoning"][0]["word"] == "四"


def test_history_diff_and_restore(client, annotated, lead):
    annotator, ex = annotated
    example_save(example=ex, user=annotator, based_on=1, changes={"reasoning": "alpha beta gamma"})
    example_save(example=ex, user=annotator, based_on=2, changes={"reasoning": "alpha delta gamma"})
    client.force_login(annotator)
    html = client.get(reverse("curation:history", kwargs={"pk": ex.pk}) + "?a=2&b=3").content.decode()
    assert "<del>beta</del><ins>delta</ins>" in html
    resp = client.post(reverse("curation:restore", kwargs={"pk": ex.pk}), {"number": 2, "based_on": 3})
    assert resp.status_code == 302
    ex.refresh_from_db()
    assert (ex.reasoning, ex.version) == ("alpha beta gamma", 4)


def test_import_flow_through_pages(client, project, lead, data_dir, django_capture_on_commit_callbacks):
    client.force_login(lead)
    from django.core.files.uploadedfile import SimpleUploadedFile

    rows = "\n".join(json.dumps({"prompt": f"p{i}", "reasoning": "r", "summary": "s"}) for i in range(5))
    resp = client.post(reverse("curation:import_new", kwargs={"slug": project.slug}),
                       {"file": SimpleUploadedFile("rows.jsonl", rows.encode())})
    job = ImportJob.objects.get()
    assert resp["Location"] == reverse("curation:import", kwargs={"job_id": job.pk})
    assert b"5</strong> rows, all valid" in client.get(resp["Location"]).content
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("curation:import", kwargs={"job_id": job.pk}))
    finally:
        celery_app.conf.task_always_eager = False
    progress = client.get(reverse("curation:import_progress", kwargs={"job_id": job.pk})).json()
    assert progress["status"] == "succeeded" and progress["done"] == 5
    assert Example.objects.filter(project=project).count() == 5


def test_bad_import_shows_lines_through_page(client, project, lead, data_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(lead)
    rows = '{"prompt": "ok", "reasoning": "r"}\n{"prompt": ""}\n'
    resp = client.post(reverse("curation:import_new", kwargs={"slug": project.slug}), {"file": SimpleUploadedFile("bad.jsonl", rows.encode())}, follow=True)
    html = resp.content.decode()
    assert "Nothing will be imported" in html and "<td>2</td>" in html


def test_search_and_filters(client, project, lead):
    make_example(project, lead, prompt="Prove that the primes are infinite", reasoning="Suppose finitely many primes.")
    make_example(project, lead, prompt="Add 2 and 2", reasoning="Addition.", language="zh")
    client.force_login(lead)
    url = reverse("curation:examples", kwargs={"slug": project.slug})
    html = client.get(url, {"q": "prime"}).content.decode()  # stemming: "prime" finds "primes"
    assert "Prove that the primes" in html and "Add 2 and 2" not in html
    html = client.get(url, {"language": "zh"}).content.decode()
    assert "Add 2 and 2" in html and "Prove that" not in html
    html = client.get(url, {"min_length": "abc"}).content.decode()
    assert "must be a whole number" in html


def test_bulk_approve_filtered_selection(client, project, lead, reviewer, annotated):
    annotator, ex = annotated
    other = make_example(project, lead, language="zh")
    for e in (ex, other):
        example_submit(example=e, user=annotator)
    client.force_login(reviewer)  # lead wrote them: another reviewer approves
    client.post(reverse("curation:bulk_approve", kwargs={"slug": project.slug}), {"language": "zh"})
    assert dict(Example.objects.values_list("pk", "status")) == {ex.pk: "submitted", other.pk: "approved"}


def test_freeze_and_download(client, project, lead, reviewer, data_dir):
    ex = make_example(project, lead)
    example_submit(example=ex, user=lead)
    example_review(example=ex, user=reviewer, decision="approve")  # four eyes
    client.force_login(lead)
    resp = client.post(reverse("curation:version_freeze", kwargs={"slug": project.slug}), {"note": "first"}, follow=True)
    assert b"Version 1 frozen" in resp.content
    version = project.versions.get()
    body = b"".join(client.get(reverse("curation:version_download", kwargs={"pk": version.pk})).streaming_content)
    assert json.loads(body.splitlines()[0])["messages"][1]["content"].startswith("<think>")


def test_search_follows_edits(client, project, lead):
    ex = make_example(project, lead, prompt="Count the apples", reasoning="There are apples.")
    example_save(example=ex, user=lead, based_on=1, changes={"reasoning": "There are oranges now."})
    client.force_login(lead)
    url = reverse("curation:examples", kwargs={"slug": project.slug})
    assert "Count the apples" in client.get(url, {"q": "oranges"}).content.decode()
    assert "Count the apples" in client.get(url, {"q": "apple"}).content.decode()  # still in the prompt
    assert "No example matches" in client.get(url, {"q": "bananas"}).content.decode()
