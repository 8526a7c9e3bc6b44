"""Import: bad rows are named with their line numbers and nothing is imported; good files import all."""
import json

import pytest

from r1lab.curation.services.errors import TransitionError
from r1lab.curation.services.import_jobs import import_job_create, import_job_run, import_job_start
from r1lab.curation.services.projects import project_create, project_set_annotators
from r1lab.curation.formats import parse_file
from r1lab.curation.models import Assignment, Example, ImportJob, Revision
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _jsonl(rows):
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n").encode()


GOOD = {"prompt": "1+1?", "reasoning": "One and one make two.", "summary": "2", "gold_answer": "2"}


def test_jsonl_errors_name_their_lines_and_nothing_is_imported(project, lead, data_dir):
    data = _jsonl([
        GOOD,
        "{not json",
        {"reasoning": "no prompt"},
        "",  # blank lines are skipped but counted
        {"prompt": "p", "reasoning": "r", "source": "scraped"},
        {"prompt": "p", "completion": "no tags at all"},
        GOOD,
    ])
    job = import_job_create(project=project, user=lead, filename="bad.jsonl", data=data)
    assert job.status == ImportJob.Status.INVALID
    lines = {e["line"]: e["message"] for e in job.errors}
    assert set(lines) == {2, 3, 5, 6}
    assert "not valid JSON" in lines[2]
    assert "prompt" in lines[3]
    assert "source" in lines[5]
    assert "<think>" in lines[6]
    with pytest.raises(TransitionError):
        import_job_start(job=job)
    assert Example.objects.count() == 0


def test_csv_errors_use_file_line_numbers(project, lead, data_dir):
    data = (
        'prompt,reasoning,summary,tags\n'
        '"multi\nline prompt",thinking,ans,"a,b"\n'  # lines 2-3
        ',missing prompt,x,\n'  # line 4
        'ok,fine,x,\n'
    ).encode()
    result = parse_file(data, file_format="csv")
    assert [e["line"] for e in result.errors] == [4]
    assert result.rows[0].line == 2 and result.rows[0].tags == ["a", "b"]
    assert result.rows[1].line == 5


def test_good_import_writes_everything_with_revisions_and_assignments(project, lead, data_dir, django_capture_on_commit_callbacks):
    annotator = UserFactory(role="annotator")
    project_set_annotators(project=project, users=[annotator])
    rows = [dict(GOOD, prompt=f"{i}+1?", gold_answer=str(i + 1), summary=str(i + 1)) for i in range(30)]
    rows.append({"prompt": "chat row", "completion": "<think>hmm</think><answer>7</answer>", "source": "rejection_sampling",
                 "source_ref": {"run": 3}, "score": 0.9})
    job = import_job_create(project=project, user=lead, filename="good.jsonl", data=_jsonl(rows))
    assert job.status == ImportJob.Status.READY and job.total_rows == 31
    assert len(job.preview) == 10
    assert "score" in job.message  # ignored columns are named in the preview
    job = import_job_start(job=job)
    assert job.status == ImportJob.Status.RUNNING
    job = import_job_run(job_id=job.pk, progress_every=7)
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert Example.objects.filter(project=project).count() == 31
    assert Revision.objects.filter(example__project=project).count() == 31
    assert Assignment.objects.filter(project=project, user=annotator).count() == 31
    chat = Example.objects.get(prompt="chat row")
    assert (chat.reasoning, chat.summary, chat.source, chat.source_ref) == ("hmm", "7", "rejection_sampling", {"run": 3})
    assert Example.objects.get(prompt="3+1?").accuracy == 1.0
    assert job.done_rows == 31


def test_upload_of_other_type_is_refused(project, lead, data_dir):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        import_job_create(project=project, user=lead, filename="x.xlsx", data=b"PK")


def test_non_utf8_file_is_one_clear_error(project, lead, data_dir):
    job = import_job_create(project=project, user=lead, filename="x.csv", data="prompt\nCafé".encode("latin-1"))
    assert job.status == ImportJob.Status.INVALID
    assert "UTF-8" in job.errors[0]["message"]


@pytest.mark.django_db(transaction=True)
def test_import_commits_all_or_nothing_with_checks_from_a_thread(data_dir, monkeypatch):
    """Real transactions: the checks thread reports progress on its own connection; a bad row's
    check failing mid-import (an unsupported language) rolls every written row back."""
    lead = UserFactory(role="reviewer")
    project = project_create(name="Threaded import", user=lead)
    rows = [dict(GOOD, prompt=f"{i}+1?", gold_answer=str(i + 1), summary=str(i + 1)) for i in range(25)]
    job = import_job_create(project=project, user=lead, filename="ok.jsonl", data=_jsonl(rows))
    import_job_start(job=job)
    job = import_job_run(job_id=job.pk, progress_every=10)
    assert (job.status, job.done_rows) == (ImportJob.Status.SUCCEEDED, 25)
    assert Example.objects.filter(project=project).count() == 25
    assert Example.objects.get(prompt="3+1?").accuracy == 1.0
    # The last batch fails in the checks thread: a fault injected into the language check (an
    # unsupported language is refused earlier now, at validation, with its line number).
    import training_backend.rewards as rewards

    real = rewards.language_consistency_reward

    def failing(completion, target_lang):
        if "LATE-FAULT" in completion:
            raise ValueError("injected fault")
        return real(completion, target_lang)

    monkeypatch.setattr(rewards, "language_consistency_reward", failing)
    bad = rows[:20] + [dict(GOOD, prompt="late row", reasoning="LATE-FAULT")]
    job = import_job_create(project=project, user=lead, filename="late.jsonl", data=_jsonl(bad))
    assert job.status == ImportJob.Status.READY, job.errors
    import_job_start(job=job)
    with pytest.raises(ValueError):
        import_job_run(job_id=job.pk, progress_every=10)
    assert Example.objects.filter(project=project).count() == 25  # nothing of the second file
    assert not Example.objects.filter(prompt="late row").exists()


def test_unsupported_language_is_a_row_error_naming_the_line():
    from r1lab.curation.formats import parse_file

    data = b'{"prompt": "1+1", "reasoning": "2", "language": "en"}\n{"prompt": "1+2", "reasoning": "3", "language": "fr"}\n'
    result = parse_file(data, file_format="jsonl")
    assert not result.ok
    assert [e["line"] for e in result.errors] == [2]
    assert "'fr' is not supported" in result.errors[0]["message"]
