"""The prompt-set import of the public formats as downloaded, through the page: upload → preview
(detected format, column mapping, gold answers) → confirm → the trainer reads the stored rows.
The mapping can be changed and the preview re-runs with it; all or nothing throughout."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from r1lab.pipelines.models import PromptSet
from tests.dataset_formats import fixtures as F
from training_backend.data import read_prompt_jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.R1LAB_DATA_DIR = tmp_path / "data"


def _upload(client, rows, upload, *, kind="math", name="set"):
    filename, data = F.encode(rows, upload)
    return client.post(reverse("pipelines:prompt_import"), {
        "name": name, "kind": kind, "eval_fraction": 0, "file": SimpleUploadedFile(filename, data)}, follow=True)


def _staged_url(staged):
    return reverse("pipelines:prompt_import_staged", args=[staged.token])


# Every public format once, every kind of upload at least once.
@pytest.mark.parametrize("rows, upload, kind, fmt, golds", [
    (F.GSM8K, "parquet", "math", "gsm8k", ["72", "22", "210"]),
    (F.MATH, "csv", "math", "math", ["\\frac{1}{2}", "4", "5\\sqrt{2}"]),
    (F.MATH500, "zip", "math", "math", ["21", "13"]),
    (F.DEEPSCALER, "tar.gz", "math", "problem_answer", ["55", "9"]),
    (F.NUMINA, "jsonl", "math", "problem_answer", ["2", "144"]),
    (F.OPENR1, "parquet", "math", "generations", ["15", "54"]),
    (F.CHAT, "jsonl", "general", "chat", [None, None]),
    (F.APPS, "parquet", "code", "apps", [None, None]),
    (F.MBPP, "zip", "code", "mbpp", [None, None]),
])
def test_each_public_format_imports_through_the_preview(client_as, rows, upload, kind, fmt, golds):
    client = client_as("researcher")
    response = _upload(client, rows, upload, kind=kind)
    staged = response.context["staged"]
    assert staged.ok, staged.errors
    assert staged.mapping["format"] == fmt
    assert [r.get("answer") for r in staged.preview_rows] == golds
    page = response.content.decode()
    assert 'id="column-mapping"' in page and 'id="detected-format"' in page
    assert PromptSet.objects.count() == 0  # a preview writes nothing
    client.post(_staged_url(staged))
    ps = PromptSet.objects.get(name="set")
    stored = read_prompt_jsonl(ps.train_path)  # the trainer's own reader accepts every row
    assert [r.get("answer") for r in stored] == golds and ps.train_count == len(rows)
    assert {r["type"] for r in stored} == {kind}
    if kind == "code":
        assert all(r["tests"] for r in stored)


def test_the_mapping_can_be_changed_and_the_preview_reruns_with_it(client_as):
    client = client_as("researcher")
    staged = _upload(client, F.MATH500, "parquet").context["staged"]
    assert staged.mapping["answer"] == "answer" and staged.mapping["id"] == "unique_id"
    # The user reads the gold answer from the solution's last box instead, and ids from nothing.
    form = {**staged.mapping, "answer": "solution", "answer_rule": "boxed", "id": "", "action": "remap"}
    response = client.post(_staged_url(staged), form, follow=True)
    staged = response.context["staged"]
    assert staged.ok and staged.mapping["answer"] == "solution" and staged.mapping["answer_rule"] == "boxed"
    assert [r["id"] for r in staged.preview_rows] == ["row-1", "row-2"]
    assert response.context["mapping_form"].initial["answer_rule"] == "boxed"  # the form shows what is in force
    # A column the file does not have is a form error, and the staged mapping is unchanged.
    response = client.post(_staged_url(staged), {**form, "answer": "gold"})
    assert response.status_code == 200 and "answer" in response.context["mapping_form"].errors
    assert response.context["staged"].mapping["answer"] == "solution"
    client.post(_staged_url(staged))
    stored = read_prompt_jsonl(PromptSet.objects.get(name="set").train_path)
    assert [(r["id"], r["answer"]) for r in stored] == [("row-1", "21"), ("row-2", "13")]


def test_a_mapping_that_leaves_rows_unmappable_shows_row_numbers_and_imports_nothing(client_as):
    client = client_as("researcher")
    staged = _upload(client, F.GSM8K, "parquet").context["staged"]
    form = {**staged.mapping, "answer": "question", "action": "remap"}
    response = client.post(_staged_url(staged), form, follow=True)
    staged = response.context["staged"]
    assert [e["line"] for e in staged.errors] == [1, 2, 3]
    assert "`question` has no `#### answer`" in staged.errors[0]["message"]
    assert "Nothing will be imported" in response.content.decode() and "row</th>" in response.content.decode()
    client.post(_staged_url(staged))
    assert PromptSet.objects.count() == 0


def test_a_mixed_code_set_is_refused_whole_naming_the_stdin_row(client_as):
    client = client_as("researcher")
    staged = _upload(client, [*F.APPS, F.APPS_STDIN], "jsonl", kind="code").context["staged"]
    assert not staged.ok and [e["line"] for e in staged.errors] == [3]
    client.post(_staged_url(staged))
    assert PromptSet.objects.count() == 0


def test_column_names_from_the_file_are_escaped(client_as):
    client = client_as("researcher")
    rows = [{"prompt": "1+1", "answer": "2", "<img src=x onerror=alert(1)>": "x"}]
    page = _upload(client, rows, "jsonl").content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_an_unknown_or_forged_token_changes_nothing(client_as):
    client = client_as("researcher")
    for token in ("0" * 32, "..%2F..%2Fetc%2Fpasswd"):
        response = client.post(f"/runs/prompt-sets/import/{token}/", {"action": "remap", "prompt": "x"})
        assert response.status_code in (302, 404)
    assert PromptSet.objects.count() == 0


def test_a_large_file_is_checked_in_the_background_with_progress(client_as, settings, django_capture_on_commit_callbacks, monkeypatch):
    """Above R1LAB_IMPORT_BACKGROUND_BYTES the upload page shows progress while a Celery task
    (`prompt_upload_check`, run here in-process) reads the file; then the preview as usual."""
    from r1lab.pipelines import prompt_import

    settings.R1LAB_IMPORT_BACKGROUND_BYTES = 1000
    rows = [dict(F.GSM8K[i % 3], question=f"{F.GSM8K[i % 3]['question']} ({i})") for i in range(2500)]
    client = client_as("researcher")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = _upload(client, rows, "parquet")
    assert len(queued) == 1  # the check is sent to the default queue once the request commits
    staged = response.context["staged"]
    assert staged.checking and 'id="import-progress"' in response.content.decode() and 'data-status="checking"' in response.content.decode()
    progress_url = reverse("pipelines:prompt_import_progress", args=[staged.token])
    assert client.get(progress_url).json()["status"] == "checking"
    client.post(_staged_url(staged))  # confirming while it is checked imports nothing
    assert PromptSet.objects.count() == 0
    seen = []  # what the progress poll would have read, each time the task saved progress
    real_save = prompt_import._save
    monkeypatch.setattr(prompt_import, "_save", lambda s: seen.append((s.status, s.done, s.total)) or real_save(s))
    prompt_import.upload_check(token=staged.token)
    assert seen == [("checking", 0, 0), ("checking", 1000, 2500), ("checking", 2000, 2500), ("ready", 0, 0)]
    assert client.get(progress_url).json()["status"] == "ready"
    staged = client.get(_staged_url(staged)).context["staged"]
    assert staged.ok and staged.count == 2500 and staged.preview_rows[0]["answer"] == "72"
    client.post(_staged_url(staged))
    assert PromptSet.objects.get(name="set").train_count == 2500
