"""Queue counters (QueueCount) stay equal to counting the assignments through every service that
changes them; the recount repairs drift; the queue and editor pages issue a fixed number of queries."""
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from r1lab.curation.selectors.queue import queue_counts
from r1lab.curation.services.errors import EditConflict, TransitionError
from r1lab.curation.services.examples import editor_save, example_review, example_save, example_submit, examples_bulk_approve, label_save
from r1lab.curation.services.import_jobs import import_job_create, import_job_run, import_job_start
from r1lab.curation.services.projects import project_create, project_set_annotators, project_update
from r1lab.curation.services.queue_counts import queue_counts_recompute
from r1lab.curation.models import Assignment, Example, QueueCount
from tests.curation.conftest import make_example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def counted() -> dict:
    """(project, user) -> (done, remaining), counted from the assignments (what the counters replace)."""
    rows = (Assignment.objects.values("project_id", "user_id").order_by()
            .annotate(d=Count("id", filter=Q(done=True)), r=Count("id", filter=Q(done=False))))
    return {(r["project_id"], r["user_id"]): (r["d"], r["r"]) for r in rows}


def kept() -> dict:
    return {(c.project_id, c.user_id): (c.done, c.remaining) for c in QueueCount.objects.all() if c.done or c.remaining}


def assert_consistent():
    assert kept() == counted()


def test_counters_follow_every_service(lead, reviewer, data_dir):
    project = project_create(name="Counted", user=lead, overlap=2)
    a, b, c = (UserFactory(role="annotator") for _ in range(3))
    examples = [make_example(project, lead) for _ in range(4)]  # no annotators yet: no assignments
    assert_consistent()
    project_set_annotators(project=project, users=[a, b])
    assert_consistent()
    assert queue_counts(user=a, project=project) == {"done": 0, "remaining": 4, "total": 4}
    project_set_annotators(project=project, users=[a, b, c])  # overlap already met: nothing new
    examples.append(make_example(project, lead))  # example_create fills assignments
    assert_consistent()
    # Both annotators of the first example submit it: done moves, the example becomes submitted.
    ex = examples[0]
    for user in [u for u in (a, b, c) if Assignment.objects.filter(example=ex, user=u).exists()]:
        ex = editor_save(example=ex, user=user, based_on=ex.version, changes={}, label_values={"quality": "4"}, submit=True)
        assert_consistent()
    assert ex.status == "submitted"
    # A second submit by the same annotator (refused: already submitted) changes nothing.
    with pytest.raises(TransitionError):
        example_submit(example=ex, user=a)
    assert_consistent()
    # Reject: back in both queues (done → remaining); resubmit; approve.
    ex = example_review(example=ex, user=lead, decision="reject", comment="fix it")
    assert_consistent()
    for user in [u for u in (a, b, c) if Assignment.objects.filter(example=ex, user=u).exists()]:
        ex = editor_save(example=ex, user=user, based_on=ex.version, changes={}, label_values=None, submit=True)
    example_review(example=ex, user=reviewer, decision="approve")  # lead wrote it: four eyes
    assert_consistent()
    # A conflict rolls the submit back, counters included.
    other = examples[1]
    holder = Assignment.objects.filter(example=other).first().user
    example_save(example=other, user=lead, based_on=1, changes={"reasoning": "lead's"})
    before = kept()
    with pytest.raises(EditConflict):
        editor_save(example=other, user=holder, based_on=1, changes={"reasoning": "mine"}, label_values=None, submit=True)
    assert kept() == before
    assert_consistent()
    # Bulk approve of submitted examples leaves assignments (and counters) as they are.
    examples_bulk_approve(examples=Example.objects.filter(project=project), user=reviewer)
    assert_consistent()


def test_import_counts_its_assignments(project, lead, data_dir):
    a, b = UserFactory(role="annotator"), UserFactory(role="annotator")
    project_update(project=project, description="", target_language="en", overlap=2, label_schema=project.label_schema)
    project_set_annotators(project=project, users=[a, b])
    rows = [{"prompt": f"{i}+1?", "reasoning": "adding", "summary": str(i + 1), "gold_answer": str(i + 1)} for i in range(12)]
    job = import_job_create(project=project, user=lead, filename="x.jsonl", data=("\n".join(map(json.dumps, rows)) + "\n").encode())
    import_job_start(job=job)
    import_job_run(job_id=job.pk, progress_every=5)
    assert queue_counts(user=a, project=project) == {"done": 0, "remaining": 12, "total": 12}
    assert_consistent()


def test_recount_repairs_drift_and_says_what(project, lead, capsys):
    a = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[a])
    for _ in range(3):
        make_example(project, lead)
    # Changes behind the services' back: an assignment deleted, another marked done, a counter garbled.
    Assignment.objects.filter(user=a).order_by("id").first().delete()
    first_open = Assignment.objects.filter(user=a, done=False).order_by("id").first()
    Assignment.objects.filter(pk=first_open.pk).update(done=True)
    assert kept() != counted()
    result = queue_counts_recompute(project=project)
    assert [(f["was"], f["now"]) for f in result.fixed] == [((0, 3), (1, 1))]
    assert_consistent()
    QueueCount.objects.filter(user=a).update(remaining=99)
    call_command("curation_recount")
    out = capsys.readouterr().out
    assert "done/remaining 1/99 -> 1/1" in out and "1 fixed" in out
    assert_consistent()
    call_command("curation_recount", project=project.slug)
    assert "0 fixed" in capsys.readouterr().out


def test_queue_and_editor_query_counts_do_not_grow(client, project, lead):
    """Pinned: the queue and editor pages issue a fixed number of queries (none counts assignments)."""
    a = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[a])
    examples = [make_example(project, lead) for _ in range(5)]
    client.force_login(a)
    editor_url = reverse("curation:editor", kwargs={"pk": examples[2].pk})
    client.get(editor_url)  # session warm
    # session, user, groups, then the page's own
    with CaptureQueriesContext(connection) as queue_q:
        assert client.get(reverse("curation:queue")).status_code == 200
    assert len(queue_q) == 4, [q["sql"] for q in queue_q]
    with CaptureQueriesContext(connection) as editor_q:
        assert client.get(editor_url).status_code == 200
    # the example with project, reviewer, editor and my assignment, label and counts annotated; the status trail
    assert len(editor_q) == 5, [q["sql"] for q in editor_q]
    for q in (*queue_q, *editor_q):
        assert "curation_assignment" not in q["sql"] or "LIMIT 1" in q["sql"], q["sql"]
        assert "COUNT(" not in q["sql"].upper(), q["sql"]


def test_editor_shows_my_label_counts_and_edit_right_from_its_one_query(client, project, lead):
    a, b = UserFactory(role="annotator"), UserFactory(role="annotator")
    project_set_annotators(project=project, users=[a])
    ex, other = make_example(project, lead), make_example(project, lead)
    label_save(example=ex, user=a, values={"quality": "4", "correct": "no"})
    label_save(example=ex, user=b, values={"quality": "2"})  # someone else's label is not shown to a
    example_submit(example=other, user=a)
    client.force_login(a)
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'value="4" checked' in html and 'value="2" checked' not in html
    assert 'name="label_correct" value="no" checked' in html
    assert '<span class="done">1</span> done / <span class="remaining">1</span> remaining' in html
    assert 'data-can-edit="1"' in html
    client.force_login(b)  # labelled it, but not assigned: read only, and no counts
    html = client.get(reverse("curation:editor", kwargs={"pk": ex.pk})).content.decode()
    assert 'value="2" checked' in html and 'data-can-edit="0"' in html
    assert '<span class="done">0</span> done / <span class="remaining">0</span> remaining' in html
    assert client.get(reverse("curation:editor", kwargs={"pk": 10**9})).status_code == 404
