"""Datasets that leave the lab cleanly (issue 18): what a freeze keeps, the stepwise export read in
TRL's layout, the Hugging Face folder read back by `datasets` and imported again, Argilla records
read by the Argilla SDK and imported again."""
import io
import json
import zipfile
from itertools import chain

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from r1lab.curation import argilla as argilla_format
from r1lab.curation.models import Example, ImportJob, Label, Revision, StepLabel
from r1lab.curation.services.examples import editor_save, example_review, example_save, example_submit
from r1lab.curation.services.import_jobs import import_job_create, import_job_run, import_job_start
from r1lab.curation.services.projects import project_create, project_set_annotators
from r1lab.curation.services.step_labels import StepValues
from r1lab.curation.services.version_exports import (
    dataset_version_argilla_dir,
    dataset_version_argilla_zip,
    dataset_version_hf_dir,
    dataset_version_hf_zip,
    dataset_version_stepwise_path,
    version_rows,
)
from r1lab.curation.services.versions import _row_hash, dataset_version_freeze
from r1lab.curation.steps import split_steps
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TRACES = [
    ("What is 2 + 3 × 4?", "Multiply first: 3 × 4 = 12.\n\nThen add: 2 + 12 = 15.\n\nSo it is 15.", "15"),
    ("What is 7 − 2 − 1?", "Left to right: 7 − 2 = 5.\n\nThen 5 − 1 = 3.", "4"),
    ("Is 91 prime?", "91 = 7 × 13.\n\nSo it is not prime.", "no"),
]


def _labelled(annotator, ex, *, quality, correct, steps):
    split = split_steps(ex.reasoning, ex.project.step_split)
    return editor_save(
        example=ex, user=annotator, based_on=ex.version, changes={}, submit=True,
        label_values={"quality": str(quality), "correct": correct, "comment": "<i>fine</i>"},
        step_values=StepValues(version=ex.version, digest=split.digest, labels=dict(enumerate(steps)), notes={1: "check this"}),
    )


@pytest.fixture
def version(lead, reviewer, data_dir):
    """A frozen version of three examples labelled and step-labelled by two annotators, one edited."""
    project = project_create(name="Long CoT", user=lead, overlap=2, license="cc-by-4.0", description="Arithmetic | traces")
    a, b = UserFactory(username="alice", role="annotator"), UserFactory(username="bob", role="annotator")
    project_set_annotators(project=project, users=[a, b])
    from tests.curation.conftest import make_example

    exs = [make_example(project, lead, prompt=p, reasoning=r, summary=s, gold_answer=s) for p, r, s in TRACES]
    exs[1] = example_save(example=exs[1], user=a, based_on=1, changes={"summary": "4", "reasoning": TRACES[1][1] + "\n\nCheck: 3 ≠ 4, so 7 − 2 − 1 = 4."})
    # Example 1: alice correct, incorrect, correct; bob correct, incorrect, neutral.
    _labelled(a, exs[0], quality=4, correct="yes", steps=["correct", "incorrect", "correct"])
    _labelled(b, exs[0], quality=2, correct="no", steps=["correct", "incorrect", "neutral"])
    # Example 2 (edited by alice): no mistake for either.
    ex1 = Example.objects.get(pk=exs[1].pk)
    _labelled(a, ex1, quality=5, correct="yes", steps=["correct", "correct", "correct"])
    _labelled(b, ex1, quality=5, correct="yes", steps=["correct", "neutral", "correct"])
    # Example 3: labels only, no step labels.
    for user in (a, b):
        editor_save(example=exs[2], user=user, based_on=1, changes={}, label_values={"quality": "3"}, submit=True)
    for ex in exs:
        example_review(example=Example.objects.get(pk=ex.pk), user=reviewer, decision="approve")
    make_example(project, lead, prompt="a draft", reasoning="not frozen")
    return dataset_version_freeze(project=project, user=lead, note="first cut").version


def test_freeze_keeps_labels_steps_history_and_the_cards_counts(version, lead):
    items = {i.prompt: i for i in version.items.all()}
    first = items[TRACES[0][0]]
    assert first.labels == {"alice": {"quality": 4, "correct": True, "comment": "<i>fine</i>"},
                            "bob": {"quality": 2, "correct": False, "comment": "<i>fine</i>"}}
    assert first.steps["texts"] == ["Multiply first: 3 × 4 = 12.", "Then add: 2 + 12 = 15.", "So it is 15."]
    assert first.steps["labels"] == ["correct", "incorrect", "neutral"]  # correct vs neutral: not a mistake, neutral
    assert first.steps["first_wrong"] == 1
    assert [a["notes"] for a in first.steps["annotations"]] == [["", "check this", ""]] * 2
    assert items[TRACES[1][0]].example_version == 2 and items[TRACES[1][0]].summary == "4"
    third = items[TRACES[2][0]]
    assert third.steps == {}
    # A row without step labels hashes as before issue 18; one with them includes their consensus.
    assert third.row_hash == _row_hash(prompt=third.prompt, completion=third.completion, gold_answer=third.gold_answer, language="en")
    assert first.row_hash != _row_hash(prompt=first.prompt, completion=first.completion, gold_answer=first.gold_answer, language="en")
    stats = version.stats
    assert stats["status_counts"] == {"draft": 1, "submitted": 0, "approved": 3, "rejected": 0}
    assert stats["labels"]["quality"] == {"2": 1, "3": 2, "4": 1, "5": 2}
    assert stats["labels"]["correct"] == {"no": 1, "yes": 3}
    assert stats["step_labels"] == {"rows_with_steps": 2, "stepwise_rows": 2, "steps": 6, "correct": 3, "incorrect": 1,
                                    "neutral": 2, "unresolved": 0}
    assert stats["made_with"]["license"] == "cc-by-4.0" and stats["made_with"]["step_split"] == "auto"

    # Freezing again changes nothing; a changed step verdict makes a new version.
    assert dataset_version_freeze(project=version.project, user=lead).created is False
    ex = Example.objects.get(prompt=TRACES[1][0])
    carol = UserFactory(role="reviewer")
    split = split_steps(ex.reasoning, "auto")
    editor_save(example=ex, user=carol, based_on=ex.version, changes={}, label_values=None, submit=False,
                step_values=StepValues(version=ex.version, digest=split.digest, labels={0: "incorrect", 1: "incorrect", 2: "incorrect"}))
    v2 = dataset_version_freeze(project=version.project, user=lead)
    assert v2.created and v2.version.changelog["changed"] == [ex.pk]




def prm_tokenize(row, tokenizer, step_separator="\n"):
    """TRL's PRMTrainer.tokenize_row (trl/trainer/prm_trainer.py), restated: each step is followed by
    the separator and labelled on its last token; every other position is -100."""
    prompt_ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
    separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)
    steps = [tokenizer(c, add_special_tokens=False)["input_ids"] + separator_ids for c in row["completions"]]
    labels = [[-100] * (len(s) - 1) + [int(label)] for s, label in zip(steps, row["labels"])]
    return {"input_ids": prompt_ids + list(chain(*steps)), "labels": [-100] * len(prompt_ids) + list(chain(*labels))}


def test_the_stepwise_export_reads_as_trl_stepwise_supervision(version, client, tmp_path):
    """The small script: read the JSONL with `datasets`, check TRL's stepwise layout, tokenize it as
    PRMTrainer does (with the repo's char-level tokenizer)."""
    datasets = pytest.importorskip("datasets")
    from training_backend.tiny import CharTokenizer

    path = dataset_version_stepwise_path(version=version)
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))  # no stale cache
    assert ds.num_rows == 2  # the third example has no step labels
    for row in ds:
        assert isinstance(row["prompt"], str) and row["prompt"]
        assert isinstance(row["completions"], list) and all(isinstance(c, str) and c for c in row["completions"])
        assert isinstance(row["labels"], list) and all(isinstance(label, bool) for label in row["labels"])
        assert len(row["labels"]) == len(row["completions"])
    first, second = sorted(ds, key=lambda r: r["id"])
    assert first["completions"] == ["Multiply first: 3 × 4 = 12.", "Then add: 2 + 12 = 15."]  # up to the first wrong step
    assert first["labels"] == [True, False] and first["first_wrong_step"] == 1
    assert second["labels"] == [True, True, True] and second["first_wrong_step"] == -1
    tok = CharTokenizer()
    tokens = prm_tokenize(first, tok)
    assert len(tokens["input_ids"]) == len(tokens["labels"])
    assert [x for x in tokens["labels"] if x != -100] == [1, 0]  # one label per step, on its separator

    # The version page offers every export; each downloads.
    client.force_login(UserFactory(role="viewer"))
    page = client.get(reverse("curation:version", kwargs={"pk": version.pk})).content.decode()
    for kind in ("stepwise", "hf", "argilla"):
        assert reverse("curation:version_export", kwargs={"pk": version.pk, "kind": kind}) in page
    resp = client.get(reverse("curation:version_export", kwargs={"pk": version.pk, "kind": "hf"}))
    assert resp.status_code == 200 and resp["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(b"".join(resp.streaming_content))).namelist()
    assert any(n.endswith("/README.md") for n in names) and any("/data/train-00000-of-00001.parquet" in n for n in names)
    resp = client.get(reverse("curation:version_export", kwargs={"pk": version.pk, "kind": "stepwise"}))
    assert [json.loads(line)["first_wrong_step"] for line in b"".join(resp.streaming_content).decode().splitlines()] == [1, -1]
    assert client.get(reverse("curation:version_export", kwargs={"pk": version.pk, "kind": "pickle"})).status_code == 404


def _zip_bytes(path):
    return path.read_bytes()


def test_hf_folder_reads_back_unchanged_with_datasets_and_imports_again(version, lead, reviewer, data_dir, tmp_path, client):
    datasets = pytest.importorskip("datasets")
    folder = dataset_version_hf_dir(version=version)
    assert dataset_version_hf_dir(version=version) == folder  # written once
    # Its own cache: `datasets` caches by path, and pytest reuses temporary paths across runs.
    ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 3
    rows = sorted(ds.to_list(), key=lambda r: r["id"])
    # Unchanged: every column of every row is what the export wrote.
    assert rows == [{k: v for k, v in row.items() if k != "step_spans"} for row in version_rows(version)]
    first = rows[0]
    assert first["prompt"] == TRACES[0][0] and first["reasoning"] == TRACES[0][1] and first["summary"] == "15"
    assert first["messages"] == [{"role": "user", "content": TRACES[0][0]},
                                 {"role": "assistant", "content": f"<think>{TRACES[0][1]}</think><answer>15</answer>"}]
    assert first["labels"] == [{"annotator": "alice", "values": {"quality": 4, "readability": None, "language_consistent": None,
                                                                  "correct": True, "comment": "<i>fine</i>"}},
                               {"annotator": "bob", "values": {"quality": 2, "readability": None, "language_consistent": None,
                                                                "correct": False, "comment": "<i>fine</i>"}}]
    assert first["step_labels"] == ["correct", "incorrect", "neutral"] and first["first_wrong_step"] == 1
    assert [r["number"] for r in rows[1]["revisions"]] == [1, 2] and rows[1]["revisions"][1]["author"] == "alice"
    assert rows[2]["steps"] == [] and rows[2]["first_wrong_step"] is None
    stepwise = datasets.load_dataset(str(folder), "stepwise", split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert stepwise.num_rows == 2 and set(stepwise.column_names) >= {"prompt", "completions", "labels"}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: \"cc-by-4.0\"")
    for expected in (version.content_hash, "first cut", "| approved | 3 |", "| draft | 1 |", "| correct | 3 |",
                     "First version: 3 added", "four eyes", "Arithmetic \\| traces", "config_name: stepwise"):
        assert expected in card, expected

    # Import the zip into a new project: text, history, labels and step verdicts come back.
    target = project_create(name="Reimported", user=lead, overlap=2)
    importer = UserFactory(role="reviewer")
    job = import_job_create(project=target, user=importer, filename="v1-hf.zip", data=_zip_bytes(dataset_version_hf_zip(version=version)))
    assert job.status == ImportJob.Status.READY, job.errors
    assert job.file_format == "hf" and job.preview[1]["revisions"] == 2
    client.force_login(importer)
    assert "2 revisions, 2 label sets, 2 step-label sets" in client.get(reverse("curation:import", kwargs={"job_id": job.pk})).content.decode()
    import_job_start(job=job)
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert "Kept from the file: 4 revisions of 3 examples, 6 label sets, 4 step-label sets." in job.message
    edited = Example.objects.get(project=target, prompt=TRACES[1][0])
    history = list(Revision.objects.filter(example=edited).order_by("number").values_list("number", "author__username", "reasoning"))
    assert history == [(1, lead.username, TRACES[1][1]), (2, "alice", edited.reasoning)] and "Check: 3 ≠ 4" in edited.reasoning
    assert edited.version == 2 and edited.summary == "4"
    assert Label.objects.get(example__project=target, example__prompt=TRACES[0][0], annotator__username="bob").values == {
        "quality": 2, "correct": False, "comment": "<i>fine</i>"}
    assert StepLabel.objects.filter(example__project=target).count() == 4
    # Approved by someone who neither wrote nor imported them, then frozen: the same content hash.
    for ex in Example.objects.filter(project=target):
        example_submit(example=ex, user=importer)
        example_review(example=ex, user=reviewer, decision="approve")
    again = dataset_version_freeze(project=target, user=importer).version
    assert again.content_hash == version.content_hash

    # Imported where bob is not a user: his labels are left out, and the message names him.
    get_user_model().objects.filter(username="bob").update(username="robert")
    elsewhere = project_create(name="Elsewhere", user=lead)
    job = import_job_create(project=elsewhere, user=lead, filename="v.zip", data=_zip_bytes(dataset_version_hf_zip(version=version)))
    import_job_start(job=job)
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert "users not in this lab (bob: 5)" in job.message
    assert not Label.objects.filter(example__project=elsewhere, annotator__username="robert").exists()
    assert Label.objects.filter(example__project=elsewhere, annotator__username="alice").count() == 3


def test_argilla_records_read_by_the_sdk_and_imported_again(version, lead, data_dir):
    rg = pytest.importorskip("argilla")
    httpx = pytest.importorskip("httpx")
    folder = dataset_version_argilla_dir(version=version)
    records = json.loads((folder / "records.json").read_text())
    assert len(records) == 3
    first = next(r for r in records if r["fields"]["prompt"] == TRACES[0][0])
    alice = argilla_format.user_id("alice")
    assert {"value": 4, "user_id": alice} in first["responses"]["quality"]
    assert {"value": "yes", "user_id": alice} in first["responses"]["correct"]
    spans = next(r["value"] for r in first["responses"]["step_labels"] if r["user_id"] == alice)
    assert [(TRACES[0][1][s["start"]:s["end"]], s["label"]) for s in spans] == [
        ("Multiply first: 3 × 4 = 12.", "correct"), ("Then add: 2 + 12 = 15.", "incorrect"), ("So it is 15.", "correct")]
    assert json.loads((folder / "r1lab_users.json").read_text())[alice] == "alice"

    # The Argilla SDK reads the settings and every record (offline: a client whose transport answers /me only).
    def offline(request):
        if request.url.path == "/api/v1/me":
            return httpx.Response(200, json={"id": "00000000-0000-4000-8000-000000000001", "username": "offline", "role": "owner",
                                             "first_name": "o", "last_name": None, "api_key": "x",
                                             "inserted_at": "2025-01-01T00:00:00", "updated_at": "2025-01-01T00:00:00"})
        return httpx.Response(404, json={"detail": "offline"})

    rg.Argilla(api_url="http://argilla.offline", api_key="offline", mounts={"http://": httpx.MockTransport(offline)})
    settings = rg.Settings.from_json(folder / ".argilla" / "settings.json")
    assert [f.name for f in settings.fields] == ["prompt", "reasoning", "summary", "gold_answer"]
    questions = {q.name: q for q in settings.questions}
    assert questions["step_labels"].field == "reasoning" and questions["step_labels"].labels == ["correct", "incorrect", "neutral"]
    assert questions["quality"].values == [1, 2, 3, 4, 5] and questions["correct"].labels == ["yes", "no"]
    for raw in records:
        record = rg.Record.from_dict(raw)
        assert record.to_dict()["responses"] == raw["responses"] and record.fields["prompt"] == raw["fields"]["prompt"]
    assert json.loads((folder / ".argilla" / "dataset.json").read_text())["distribution"] == {"strategy": "overlap", "min_submitted": 2}

    # Back into r1lab: labels (yes/no answers become yes/no labels again) and step verdicts by span.
    target = project_create(name="From Argilla", user=lead)
    job = import_job_create(project=target, user=lead, filename="records.zip", data=dataset_version_argilla_zip(version=version).read_bytes())
    assert job.status == ImportJob.Status.READY and job.file_format == "argilla", job.errors
    import_job_start(job=job)
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert "6 label sets, 4 step-label sets" in job.message
    ex = Example.objects.get(project=target, prompt=TRACES[0][0])
    assert ex.reasoning == TRACES[0][1] and ex.revisions.count() == 1  # Argilla records carry no history
    assert Label.objects.get(example=ex, annotator__username="alice").values == {"quality": 4, "correct": True, "comment": "<i>fine</i>"}
    mine = StepLabel.objects.get(example=ex, annotator__username="bob")
    from r1lab.curation.selectors.examples import editor_steps
    assert [r["label"] for r in editor_steps(example=ex, entries=mine.entries).rows] == ["correct", "incorrect", "neutral"]


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_bad_archives_are_refused_with_a_reason_and_import_nothing(project, lead, data_dir):
    # A .zip that is no exported version is read as a datasets save_to_disk archive (dataset_formats),
    # which says why it is not one: an invalid job, nothing imported.
    job = import_job_create(project=project, user=lead, filename="x.zip", data=_zip({"notes.txt": b"hi"}))
    assert job.status == ImportJob.Status.INVALID and "no datasets save_to_disk folder" in job.errors[0]["message"]
    job = import_job_create(project=project, user=lead, filename="x.zip", data=b"PK\x03\x04 not really")
    assert job.status == ImportJob.Status.INVALID and "not a .zip or .tar(.gz) archive" in job.errors[0]["message"]
    job = import_job_create(project=project, user=lead, filename="x.zip", data=_zip({"d/data/train-00000-of-00001.parquet": b"nope"}))
    assert job.status == ImportJob.Status.INVALID and "Parquet" in job.errors[0]["message"]
    alice = argilla_format.user_id("someone")
    records = [
        {"fields": {"prompt": "ok?", "reasoning": "A. B."}, "responses": {}},
        {"fields": {"prompt": "bad span", "reasoning": "short"},
         "responses": {"step_labels": [{"value": [{"start": 0, "end": 99, "label": "correct"}], "user_id": alice}]}},
        {"fields": {"reasoning": "no prompt"}},
        {"fields": {"prompt": "bad label", "reasoning": "x"},
         "responses": {"step_labels": [{"value": [{"start": 0, "end": 1, "label": "great"}], "user_id": alice}]}},
    ]
    job = import_job_create(project=project, user=lead, filename="a.zip",
                            data=_zip({"ds/records.json": json.dumps(records).encode(), "ds/r1lab_users.json": json.dumps({alice: "someone"}).encode()}))
    assert job.status == ImportJob.Status.INVALID
    assert {e["line"]: e["message"] for e in job.errors} == {
        2: "record 2: a span of 'step_labels' is outside the reasoning",
        3: "record 3: `prompt` is missing or empty",
        4: "record 4: a span of 'step_labels' is labelled 'great', not one of correct, incorrect, neutral",
    }
    assert not Example.objects.filter(project=project).exists()


def test_a_freeze_keeps_only_answers_that_still_fit_the_label_set():
    """The label set may change after answers were given; the exports type label values from it."""
    from r1lab.curation.labels import value_fits

    scale = {"key": "q", "type": "scale", "min": 1, "max": 5}
    assert value_fits(scale, 4) and not value_fits(scale, "4") and not value_fits(scale, True) and not value_fits(scale, 9)
    assert value_fits({"type": "bool"}, False) and not value_fits({"type": "bool"}, "no")
    assert value_fits({"type": "choice", "choices": ["a", "b"]}, "a") and not value_fits({"type": "choice", "choices": ["a"]}, "c")
    assert value_fits({"type": "text"}, "x") and not value_fits({"type": "text"}, 3)
