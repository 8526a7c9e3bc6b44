"""Dataset versions: content hashing, changelog, immutability of frozen text, export round-trip."""
import json

import pytest
from django.core.exceptions import ValidationError

from r1lab.curation.selectors.versions import dataset_versions_for_picker
from r1lab.curation.services.examples import example_review, example_save, example_submit
from r1lab.curation.services.import_jobs import import_job_create
from r1lab.curation.services.projects import project_create
from r1lab.curation.services.versions import dataset_version_export_path, dataset_version_freeze, dataset_version_record_use
from tests.curation.conftest import make_example

pytestmark = pytest.mark.django_db


def _approve(ex, lead, reviewer):
    """`lead` wrote (or last edited) `ex` and submits it; another reviewer approves it (four eyes)."""
    if ex.status != "submitted":
        example_submit(example=ex, user=lead)
    return example_review(example=ex, user=reviewer, decision="approve")


def test_freeze_hash_changelog_and_idempotence(project, lead, reviewer, data_dir):
    with pytest.raises(ValidationError):
        dataset_version_freeze(project=project, user=lead)
    a = _approve(make_example(project, lead, prompt="A?"), lead, reviewer)
    b = _approve(make_example(project, lead, prompt="B?"), lead, reviewer)
    v1 = dataset_version_freeze(project=project, user=lead).version
    assert (v1.number, v1.example_count, v1.changelog["added"]) == (1, 2, [a.pk, b.pk])
    again = dataset_version_freeze(project=project, user=lead)
    assert again.created is False and again.version == v1

    # Same content in another project: the same hash.
    other = project_create(name="Copy", user=lead)
    _approve(make_example(other, lead, prompt="B?"), lead, reviewer)
    _approve(make_example(other, lead, prompt="A?"), lead, reviewer)
    assert dataset_version_freeze(project=other, user=lead).version.content_hash == v1.content_hash

    # Edit one (back to review, approved again by the other reviewer), add one: v2 says so, and v1
    # keeps its frozen text.
    a = example_save(example=a, user=lead, based_on=a.version, changes={"reasoning": "Rewritten."})
    _approve(a, lead, reviewer)
    c = _approve(make_example(project, lead, prompt="C?"), lead, reviewer)
    v2 = dataset_version_freeze(project=project, user=lead).version
    assert v2.number == 2 and v2.content_hash != v1.content_hash
    assert v2.changelog == {"previous": 1, "added": [c.pk], "removed": [], "changed": [a.pk]}
    assert "Rewritten." not in v1.items.get(example_ref=a.pk).completion
    picker = list(dataset_versions_for_picker())
    assert picker[0] == v2 and picker.index(v2) < picker.index(v1) and len(picker) == 3


def test_export_path_is_written_once_in_chat_format(project, lead, reviewer, data_dir):
    ex = _approve(make_example(project, lead, prompt="What is <b>2+2</b>?", reasoning="Äh, 2+2=4 — 四.", summary="4"), lead, reviewer)
    version = dataset_version_freeze(project=project, user=lead).version
    path = dataset_version_export_path(version=version)
    assert path.parent == data_dir / "datasets"
    mtime = path.stat().st_mtime_ns
    assert dataset_version_export_path(version=version) == path
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records == [{
        "messages": [
            {"role": "user", "content": "What is <b>2+2</b>?"},
            {"role": "assistant", "content": "<think>Äh, 2+2=4 — 四.</think><answer>4</answer>"},
        ],
        "id": ex.pk, "gold_answer": "4", "language": "en", "source": "manual",
    }]


def test_export_round_trips_through_datasets(project, lead, reviewer, data_dir):
    # `datasets` is a real dependency (requirements.txt): no importorskip, this round trip always runs.
    import datasets

    for i in range(3):
        _approve(make_example(project, lead, prompt=f"Q{i}"), lead, reviewer)
    version = dataset_version_freeze(project=project, user=lead).version
    ds = datasets.load_dataset("json", data_files=str(dataset_version_export_path(version=version)), split="train")
    assert ds.num_rows == 3
    assert ds[0]["messages"][0] == {"role": "user", "content": "Q0"}


def test_export_then_reimport_round_trip(project, lead, reviewer, data_dir):
    _approve(make_example(project, lead, prompt="Round?", reasoning="trip", summary="yes"), lead, reviewer)
    version = dataset_version_freeze(project=project, user=lead).version
    data = dataset_version_export_path(version=version).read_bytes()
    target = project_create(name="Reimport", user=lead)
    job = import_job_create(project=target, user=lead, filename="v1.jsonl", data=data)
    assert job.status == "ready", job.errors
    assert job.preview[0]["prompt"] == "Round?" and job.preview[0]["reasoning"] == "trip"


def test_record_use_for_lineage(project, lead, reviewer, data_dir):
    _approve(make_example(project, lead), lead, reviewer)
    version = dataset_version_freeze(project=project, user=lead).version
    dataset_version_record_use(version=version, consumer="run 7 · sft", checkpoint="/data/ckpt/7")
    assert version.uses.get().checkpoint == "/data/ckpt/7"
