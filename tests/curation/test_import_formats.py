"""Cold-start imports of reasoning traces as downloaded: each public format through the import page's
preview (detected format, column mapping, gold answers) and the import itself; the mapping can
be changed before the import starts, never after."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from r1lab.curation.models import Example, ImportJob
from r1lab.curation.services.errors import TransitionError
from r1lab.curation.services.import_jobs import import_job_create, import_job_remap, import_job_run, import_job_start
from r1lab.dataset_formats import Mapping
from tests.dataset_formats import fixtures as F

pytestmark = pytest.mark.django_db


def _upload_page(client, project, rows, upload):
    filename, data = F.encode(rows, upload)
    response = client.post(reverse("curation:import_new", args=[project.slug]), {"file": SimpleUploadedFile(filename, data)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return ImportJob.objects.latest("pk")


@pytest.mark.parametrize("rows, upload, fmt, first", [
    # (reasoning, summary, gold) of the first row
    (F.GSM8K, "csv", "gsm8k", ("On Tuesday she picks 48/2 = <<48/2=24>>24 apples.\nIn all she picks 48+24 = <<48+24=72>>72 apples.", "72", "72")),
    (F.MATH, "parquet", "math", (F.MATH[0]["solution"], "\\frac{1}{2}", "\\frac{1}{2}")),
    (F.NUMINA, "zip", "problem_answer", (F.NUMINA[0]["solution"], "2", "2")),
    (F.OPENR1, "tar.gz", "generations", ("7 + 8: 7 + 3 = 10, plus 5 is 15. Wait, let me check: 8 + 7 = 15.", "The sum is $\\boxed{15}$.", "15")),
    (F.CHAT, "parquet", "chat", ("6 * 6 = 36.", "$\\boxed{36}$", "")),
    (F.SHAREGPT, "jsonl", "chat", ("10 - 3 = 7.", "$\\boxed{7}$", "")),
])
def test_each_trace_format_imports_through_the_preview(client_as, data_dir, project, rows, upload, fmt, first):
    client = client_as("reviewer")
    job = _upload_page(client, project, rows, upload)
    assert job.status == ImportJob.Status.READY, job.errors
    assert job.mapping["format"] == fmt and job.total_rows == len(rows)
    assert (job.preview[0]["reasoning"], job.preview[0]["summary"], job.preview[0]["gold_answer"]) == first
    page = client.get(reverse("curation:import", args=[job.pk])).content.decode()
    assert 'id="column-mapping"' in page and Mapping.from_dict(job.mapping).label in page
    job = import_job_start(job=job)
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    example = Example.objects.filter(project=project).order_by("pk").first()
    assert (example.reasoning, example.summary, example.gold_answer) == first
    assert example.source == "imported"  # NuminaMath's / Open-R1's `source` column is theirs, not ours
    if first[2]:
        assert example.accuracy == 1.0  # the checks agree with the gold answer extracted


def test_remapping_an_invalid_preview_makes_it_importable(client_as, data_dir, project):
    """Open-R1 rows whose math-verify flags are all false: read with the llama judge's flags instead."""
    rows = [dict(r, correctness_llama=[True] * len(r["generations"]), correctness_math_verify=[False] * len(r["generations"]))
            for r in F.OPENR1]
    client = client_as("reviewer")
    job = _upload_page(client, project, rows, "parquet")
    assert job.status == ImportJob.Status.INVALID
    assert [(e["line"], e["message"]) for e in job.errors] == [
        (1, "no generation is marked correct in `correctness_math_verify`"),
        (2, "no generation is marked correct in `correctness_math_verify`")]
    assert "row</th>" in client.get(reverse("curation:import", args=[job.pk])).content.decode()
    form = {**job.mapping, "correct": "correctness_llama"}
    response = client.post(reverse("curation:import_mapping", args=[job.pk]), form)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.READY and job.mapping["correct"] == "correctness_llama"
    assert job.preview[0]["reasoning"].startswith("7 + 8 = 16.")  # the first generation, flagged by llama
    # a column the file lacks: a form error on the page, the job as it was
    response = client.post(reverse("curation:import_mapping", args=[job.pk]), {**form, "correct": "nope"})
    assert response.status_code == 200 and "nope" in response.content.decode()
    job.refresh_from_db()
    assert job.mapping["correct"] == "correctness_llama"
    assert Example.objects.count() == 0


def test_the_mapping_cannot_change_once_the_import_started(data_dir, project, lead):
    filename, data = F.encode(F.GSM8K, "jsonl")
    job = import_job_start(job=import_job_create(project=project, user=lead, filename=filename, data=data))
    with pytest.raises(TransitionError):
        import_job_remap(job=job, mapping=Mapping(format="gsm8k", prompt="question", reasoning="answer", answer="answer"))


def test_the_import_reads_the_file_with_the_chosen_mapping(data_dir, project, lead):
    filename, data = F.encode(F.MATH500, "parquet")
    job = import_job_create(project=project, user=lead, filename=filename, data=data)
    job = import_job_remap(job=job, mapping=Mapping(**{**job.mapping, "answer": "solution", "answer_rule": "boxed", "id": ""}))
    import_job_run(job_id=import_job_start(job=job).pk)
    assert list(Example.objects.order_by("pk").values_list("gold_answer", "source_ref")) == [("21", None), ("13", None)]


def test_a_large_file_is_checked_in_the_background_with_progress(client_as, settings, data_dir, project, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    """Above R1LAB_IMPORT_BACKGROUND_BYTES the job is `checking` (progress on the page) while a
    Celery task (`curation.import_check`, run here in-process) reads the file; then ready, as a small
    file is at once. A remap of such a file is checked in the background again."""
    from r1lab.curation.services import import_jobs

    settings.R1LAB_IMPORT_BACKGROUND_BYTES = 1000
    rows = [dict(F.GSM8K[i % 3], question=f"{F.GSM8K[i % 3]['question']} ({i})") for i in range(2500)]
    client = client_as("reviewer")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = _upload_page(client, project, rows, "parquet")
    assert len(queued) == 1 and job.status == ImportJob.Status.CHECKING and job.preview == []
    page = client.get(reverse("curation:import", args=[job.pk])).content.decode()
    assert 'data-status="checking"' in page and "column-mapping" not in page
    seen = []
    real = import_jobs._progress
    monkeypatch.setattr(import_jobs, "_progress", lambda job_id, **f: seen.append(f.get("done_rows")) or real(job_id, **f))
    job = import_jobs.import_job_check(job_id=job.pk)
    assert seen == [0, 1000, 2000]
    assert job.status == ImportJob.Status.READY and job.total_rows == 2500 and job.preview[0]["gold_answer"] == "72"
    assert client.get(reverse("curation:import_progress", args=[job.pk])).json()["status"] == "ready"
    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = import_job_remap(job=job, mapping=Mapping(**{**job.mapping, "reasoning": ""}))
    assert len(queued) == 1 and job.status == ImportJob.Status.CHECKING
    job = import_jobs.import_job_check(job_id=job.pk)
    assert job.status == ImportJob.Status.INVALID and job.errors[0] == {"line": 1, "message": "`reasoning` is missing or empty (or give a `completion` with <think>…</think>)"}
