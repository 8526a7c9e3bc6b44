"""The rejection-sampling workbench: load a stage's output, browse kept / removed rows with the
reason, spot-check with a Wilson interval, freeze the kept set into a curation dataset version."""
import json

import pytest
from django.urls import reverse

from r1lab.curation.models import DatasetVersion, Example
from r1lab.rollouts.rs import selectors, services
from r1lab.rollouts.models import RSDataset, RSRow, SpotCheckItem
from tests.rollouts.helpers import XSS
from tests.rollouts.rs_helpers import CHECKPOINT, make_rs_stage

pytestmark = pytest.mark.django_db


def load(client, stage):
    return client.post(reverse("rollouts:rs_load", args=[stage.pk]))


def test_load_records_every_candidate_kept_or_removed_with_the_stage_s_reason(tmp_path, client_as):
    stage, made = make_rs_stage(tmp_path)
    client = client_as("researcher")
    assert load(client, stage).status_code == 302
    ds = RSDataset.objects.get(stage=stage)
    assert ds.reasons_source == "stage"
    assert ds.kept_count == made["funnel"]["kept"] == 4
    assert ds.removed_count == 7
    assert ds.checkpoint == CHECKPOINT and ds.checkpoint_step == 300
    counts = selectors.rs_reason_counts(dataset=ds)
    assert counts == {k: v for k, v in made["funnel"]["removed"].items() if v}
    assert counts == {"format": 1, "correct": 1, "language": 1, "readability": 1, "reward": 1, "dedupe": 1, "cap": 1}
    row = RSRow.objects.get(dataset=ds, prompt_id="b", sample=2)
    assert row.reason == "readability" and row.reason_detail == "code block in the CoT"
    assert RSRow.objects.get(dataset=ds, prompt_id="a", sample=0).reflection_count == 2


def test_without_removed_jsonl_the_reasons_are_recomputed_identically(tmp_path, client_as):
    stage, made = make_rs_stage(tmp_path, with_removed=False)
    load(client_as("researcher"), stage)
    ds = RSDataset.objects.get(stage=stage)
    assert ds.reasons_source == "recomputed"
    got = {(r.prompt_id, r.sample): r.reason for r in RSRow.objects.filter(dataset=ds, kept=False)}
    assert got == made["reasons"]


def test_workbench_page_shows_funnel_kept_and_removed_with_reason_escaped(tmp_path, client_as):
    stage, made = make_rs_stage(tmp_path)
    client = client_as("viewer")
    assert "Load the stage" not in client.get(reverse("rollouts:rs", args=[stage.pk])).content.decode()  # viewers don't load
    services.rs_dataset_load(stage=stage, user=None)
    r = client.get(reverse("rollouts:rs", args=[stage.pk]))
    assert r.context["funnel"]["names"][0] == "sampled" and r.context["funnel"]["values"][0] == 11
    assert r.context["funnel"]["values"][-1] == 4
    assert len(r.context["rows"]) == 4 and all(c.obj.kept for c in r.context["rows"])
    html = r.content.decode()
    assert XSS not in html and "&lt;script&gt;" in html
    r = client.get(reverse("rollouts:rs", args=[stage.pk]) + "?view=removed&reason=readability")
    (c,) = r.context["rows"]
    assert c.obj.reason == "readability" and "removed by readability" in r.content.decode()
    r = client.get(reverse("rollouts:rs", args=[stage.pk]) + "?view=removed&reflection=1")
    assert [(c.obj.prompt_id, c.obj.sample) for c in r.context["rows"]] == [("a", 2)]
    r = client.get(reverse("rollouts:rs", args=[stage.pk]) + "?view=kept&reward_min=1.96")
    assert {(c.obj.prompt_id, c.obj.sample) for c in r.context["rows"]} == {("a", 0), ("b", 0)}


def test_spot_check_error_rate_and_freeze_into_a_dataset_version(tmp_path, client_as, make_user):
    stage, _ = make_rs_stage(tmp_path)
    services.rs_dataset_load(stage=stage, user=None)
    ds = RSDataset.objects.get(stage=stage)
    annotator = client_as("annotator")
    checker = annotator.user
    r = annotator.post(reverse("rollouts:spot_new", args=[stage.pk]), {"size": 3})
    check = ds.spot_checks.get()
    assert r["Location"] == reverse("rollouts:spot", args=[check.pk])
    items = list(check.items.order_by("position"))
    assert len(items) == 3 and all(i.row.kept for i in items)
    page = annotator.get(r["Location"])
    assert len(page.context["items"]) == 3

    reviewer = make_user("reviewer")
    annotator.force_login(reviewer)
    r = annotator.post(reverse("rollouts:rs_freeze", args=[stage.pk]), follow=True)
    assert "Finish a spot-check first" in r.content.decode() and not DatasetVersion.objects.exists()

    annotator.force_login(checker)  # four eyes: one person spot-checks, a reviewer freezes
    for item, verdict in zip(items, ["good", "bad", "good"]):
        annotator.post(reverse("rollouts:spot_mark", args=[item.pk]), {"verdict": verdict, "note": "n"})
    annotator.force_login(reviewer)
    summary = selectors.spot_check_summary(spot_check=check)
    assert (summary["good"], summary["bad"], summary["complete"]) == (2, 1, True)
    assert summary["error"].estimate == pytest.approx(1 / 3)
    assert 0.06 < summary["error"].low < 0.07 and 0.79 < summary["error"].high < 0.80  # Wilson 95% for 1/3

    bad_row = SpotCheckItem.objects.get(spot_check=check, verdict="bad").row
    r = annotator.post(reverse("rollouts:rs_freeze", args=[stage.pk]), {"note": "first cut"}, follow=True)
    assert "Frozen:" in r.content.decode()
    ds.refresh_from_db()
    version = ds.dataset_version
    assert version.example_count == 3  # 4 kept minus the one marked bad
    assert "step 300" in version.note and "Wilson" in version.note and version.note.startswith("first cut")
    examples = Example.objects.filter(project=ds.curation_project)
    assert examples.count() == 3 and set(examples.values_list("status", flat=True)) == {"approved"}
    assert bad_row.pk not in [e.source_ref["rs_row"] for e in examples]
    ref = examples.first().source_ref
    assert ref["checkpoint"] == CHECKPOINT and ref["checkpoint_step"] == 300 and ref["model_stage"] == stage.resolved_inputs["model"]["stage_id"]
    assert set(examples.values_list("source", flat=True)) == {"rejection_sampling"}
    from r1lab.pipelines.selectors import dataset_versions_for_picker

    assert version.pk in [v[0] if isinstance(v, tuple) else v.pk for v in dataset_versions_for_picker()]
    # frozen: the dataset is not reloaded from disk under the version's feet
    r = annotator.post(reverse("rollouts:rs_load", args=[stage.pk]), follow=True)
    assert "not reloaded" in r.content.decode()
    # freezing again with nothing changed makes no new version
    annotator.post(reverse("rollouts:rs_freeze", args=[stage.pk]))
    assert DatasetVersion.objects.count() == 1


def test_roles_that_may_not_write_get_403_and_nothing_changes(tmp_path, client_as):
    stage, _ = make_rs_stage(tmp_path)
    viewer = client_as("viewer")
    assert load(viewer, stage).status_code == 403
    assert not RSDataset.objects.exists()
    services.rs_dataset_load(stage=stage, user=None)
    assert viewer.post(reverse("rollouts:spot_new", args=[stage.pk]), {"size": 2}).status_code == 403
    researcher = client_as("researcher")
    assert researcher.post(reverse("rollouts:rs_freeze", args=[stage.pk])).status_code == 403
    assert not DatasetVersion.objects.exists()


def test_a_stage_that_has_not_finished_gets_a_clear_message(tmp_path, client_as):
    stage, _ = make_rs_stage(tmp_path)
    (tmp_path / "rs" / "candidates.jsonl").unlink()
    r = load(client_as("researcher"), stage)
    r = client_as("researcher").get(r["Location"])
    assert "has no candidates.jsonl yet" in r.content.decode()
    assert not RSDataset.objects.exists()


def test_a_corrupt_file_loads_nothing(tmp_path, client_as):
    stage, _ = make_rs_stage(tmp_path)
    services.rs_dataset_load(stage=stage, user=None)
    with open(tmp_path / "rs" / "candidates.jsonl", "a") as fh:
        fh.write("{not json\n")
    client = client_as("researcher")
    r = client.get(load(client, stage)["Location"])
    assert "line 12 is not JSON" in r.content.decode()
    assert RSDataset.objects.get(stage=stage).kept_count == 4  # the earlier load is intact


def test_real_stage_on_the_tiny_model_writes_removed_rows_the_workbench_loads(tmp_path, client_as):
    """rejection.train for real (tiny char model, CPU): removed.jsonl + kept rows = every candidate."""
    from tests.training_backend.test_trainer import make_model
    from training_backend import tiny
    from training_backend.config import parse_spec
    from training_backend.rejection import train
    from training_backend.report import MemoryReporter

    from r1lab.pipelines.models import Stage
    from tests.factories import PipelineRunFactory

    model = make_model(tmp_path / "base")
    data = tmp_path / "prompts.jsonl"
    tiny.write_jsonl(tiny.arithmetic_prompts(4, seed=3), data)
    config = {"num_samples": 3, "max_new_tokens": 12, "prompts_per_batch": 2, "torch_threads": 1, "log_samples": 0}
    spec = parse_spec({"kind": "rejection_sampling", "model_path": str(model), "output_dir": str(tmp_path / "out"),
                       "train_data": str(data), "seed": 1, "config": config})
    train(spec, MemoryReporter(), progress=lambda _line: None, handle_sigterm=False)
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    removed = [json.loads(x) for x in open(outputs["removed"])]
    funnel = json.loads(open(outputs["funnel"]).read())
    assert len(removed) + funnel["kept"] == funnel["sampled"] == 12
    stage = Stage.objects.create(run=PipelineRunFactory(), index=0, name="rs", kind="rejection_sampling", config=config,
                                 status="succeeded", output_dir=str(tmp_path / "out"), outputs=outputs)
    ds = services.rs_dataset_load(stage=stage, user=None)
    assert ds.reasons_source == "stage" and ds.kept_count + ds.removed_count == 12
    assert selectors.rs_reason_counts(dataset=ds) == {k: v for k, v in funnel["removed"].items() if v}
