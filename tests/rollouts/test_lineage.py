"""The prompt-lineage page (classes, counts over steps, the sortable table) and the one-click
export of a class as a prompt set, over hand-built groups ingested for real."""
import json

import pytest
from django.urls import reverse

from r1lab.pipelines import selectors as pipeline_selectors
from r1lab.pipelines.models import PipelineRun, PromptSet, Stage
from r1lab.tracking.models import PromptLineage, Sample
from r1lab.tracking.services import tracked_run_create
from tests.pipelines.factories import PromptSetFactory
from tests.rollouts.helpers import XSS, log_hand_built

pytestmark = pytest.mark.django_db


def lineage_url(run, query=""):
    return reverse("rollouts:lineage", args=[run.pk]) + query


@pytest.fixture
def run():
    run, _ = tracked_run_create(name="grpo-lineage")
    log_hand_built(run, prompts={"E": XSS})
    return run


def test_page_shows_the_classes_their_counts_over_steps_and_the_prompts(client_as, run):
    client = client_as("viewer")
    r = client.get(lineage_url(run))
    assert r.status_code == 200
    assert {c["key"]: c["count"] for c in r.context["classes"]} == {
        "learned": 1, "forgotten": 1, "always": 2, "never": 1, "mixed": 1, "zero_variance": 3}
    t = r.context["timeline"]
    assert t["steps"] == [1, 2, 3]
    assert t["counts"] == {"learned": [0, 0, 1], "forgotten": [0, 0, 1], "always": [3, 3, 2], "never": [2, 1, 1],
                           "mixed": [1, 2, 1], "zero_variance": [4, 3, 3]}
    # sorted by class (learned first), each row linking to the prompt's groups across steps
    assert [p.prompt_id for p in r.context["rows"]] == ["A", "B", "C", "F", "D", "E"]
    html = r.content.decode()
    assert f'href="{reverse("rollouts:prompt", args=[run.pk])}?prompt_id=A"' in html
    assert XSS not in html and "&lt;script&gt;" in html  # the prompt is model-facing text: escaped
    assert 'data-export="never"' not in html  # a viewer may not create prompt sets


@pytest.mark.parametrize("query,expected", [
    ("?cls=always", ["C", "F"]),
    ("?cls=zero_variance", ["A", "C", "D"]),
    ("?sort=-delta", ["A", "C", "D", "E", "F", "B"]),  # +1 first, -0.75 last, ties by prompt id
    ("?sort=rate", ["D", "A", "E", "B", "C", "F"]),  # overall 0, 6/12, 6/12, 9/12, 1, 1
    ("?sort=-first_rate&cls=always", ["C", "F"]),
])
def test_table_filters_by_class_and_sorts_by_column(client_as, run, query, expected):
    r = client_as("viewer").get(lineage_url(run, query))
    assert r.status_code == 200
    assert [p.prompt_id for p in r.context["rows"]] == expected


@pytest.mark.parametrize("query", ["?cls=genius", "?sort=password", "?offset=-3"])
def test_bad_query_is_a_400_that_says_why(client_as, run, query):
    r = client_as("viewer").get(lineage_url(run, query))
    assert r.status_code == 400 and r.content


def _pipeline_stage_for(run, prompt_set):
    pr = PipelineRun.objects.create(name="r1-zero")
    return Stage.objects.create(run=pr, index=0, name="GRPO", kind="grpo", tracked_run=run,
                                inputs={"train_data": {"from": "prompt_set", "id": prompt_set.pk}},
                                resolved_inputs={"train_data": {"from": "prompt_set", "id": prompt_set.pk, "label": prompt_set.name}})


def test_export_a_class_takes_the_rows_from_the_runs_prompt_set_and_draws_the_lineage_edge(client_as, run, tmp_path, settings):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    train = tmp_path / "train.jsonl"
    rows = [{"id": pid, "prompt": f"Problem {pid}", "answer": str(i), "type": "math", "target_lang": "en"}
            for i, pid in enumerate("ABCDEF")]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = PromptSetFactory(train_path=str(train), train_count=6)
    stage = _pipeline_stage_for(run, source)
    client = client_as("researcher")
    assert 'data-export="never"' in client.get(lineage_url(run)).content.decode()
    r = client.post(reverse("rollouts:lineage_export", args=[run.pk]), {"cls": "never"}, follow=True)
    assert r.status_code == 200
    exported = PromptSet.objects.get(source_run=run)
    assert (exported.source_class, exported.source_step, exported.train_count, exported.eval_count, exported.kind) == (
        "never", 3, 1, 0, "math")
    assert [json.loads(line) for line in open(exported.train_path)] == [rows[3]]  # D, as the file has it
    assert "Exported 1 never solved prompts" in r.content.decode()
    nodes, edges = pipeline_selectors.run_lineage(stage.run)
    assert any(n.key == f"ps-{exported.pk}" and n.kind == "exported" for n in nodes)
    assert any(e.src == "stage-0" and e.dst == f"ps-{exported.pk}" and "never solved" in e.label for e in edges)
    # the pipeline run page shows it too
    assert exported.name in client.get(reverse("pipelines:detail", args=[stage.run.pk])).content.decode()


def test_export_of_a_run_without_a_known_prompt_set_uses_the_logged_prompts_and_gold(client_as, run, tmp_path, settings):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    client = client_as("researcher")
    client.post(reverse("rollouts:lineage_export", args=[run.pk]), {"cls": "zero_variance", "name": "no signal"})
    exported = PromptSet.objects.get(name="no signal")
    got = [json.loads(line) for line in open(exported.train_path)]
    assert got == [{"id": pid, "prompt": f"Problem {pid}", "type": "math", "answer": "7"} for pid in ("A", "C", "D")]
    assert exported.source_class == "zero_variance" and exported.source_run_id == run.pk


def test_export_refuses_an_empty_class_a_bad_class_and_a_viewer(client_as, tmp_path, settings):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    run, _ = tracked_run_create(name="only always")
    from tests.rollouts.helpers import lineage_group, log

    log(run, lineage_group(1, "C", 4))
    url = reverse("rollouts:lineage_export", args=[run.pk])
    client = client_as("researcher")
    r = client.post(url, {"cls": "learned"}, follow=True)
    assert "no prompt of this run is learned" in r.content.decode()
    r = client.post(url, {"cls": "genius"}, follow=True)
    assert "Not exported" in r.content.decode()
    assert client_as("viewer").post(url, {"cls": "always"}).status_code == 403
    assert not PromptSet.objects.exists()


def test_a_run_logged_before_the_rollup_is_built_on_request(client_as, run):
    PromptLineage.objects.filter(run=run).delete()
    from r1lab.tracking.models import PromptStepStat

    PromptStepStat.objects.filter(run=run).delete()
    r = client_as("viewer").get(lineage_url(run))
    assert r.context["missing"] and "researcher can build it" in r.content.decode()
    assert client_as("viewer").post(reverse("rollouts:lineage_rebuild", args=[run.pk])).status_code == 403
    client = client_as("researcher")  # (client_as logs the one test client in)
    r = client.post(reverse("rollouts:lineage_rebuild", args=[run.pk]), follow=True)
    assert "6 prompts" in r.content.decode()
    assert r.context["counts"]["learned"] == 1 and Sample.objects.filter(run=run).count() == 72
