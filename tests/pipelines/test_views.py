"""Pipelines pages through the Django test client: launch form validation, permissions, run
page, prompt-set import (all or nothing), runs list filters, workers page."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from r1lab.pipelines import attempts, services
from r1lab.pipelines.models import PipelineRun, PromptSet, Stage
from r1lab.pipelines.stage_templates import TEMPLATES
from tests.pipelines.factories import TINY_GRPO, BaseModelFactory, PromptSetFactory, write_prompts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.R1LAB_DATA_DIR = tmp_path / "data"


@pytest.fixture
def inputs(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    train, ev = write_prompts(tmp_path / "p")
    return BaseModelFactory(path=str(model)), PromptSetFactory(train_path=str(train), eval_path=str(ev))


def _form_data(base, prompts, **config):
    """What a browser submits: every field at its default, then the tiny settings and `config`."""
    from training_backend.config import spec_fields

    data = {"template": "r1_zero", "name": "my run", "base_model": base.pk, "prompt_set": prompts.pk, "num_gpus": 1}
    values = {f.name: f.default for f in spec_fields("grpo")}
    for k, v in {**values, **TINY_GRPO, **config}.items():
        data[f"s0-{k}"] = "" if v is None else ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    return {k: v for k, v in data.items() if v is not False}


def test_launch_form_explains_each_field_with_r1_and_trl_defaults(client_as, inputs):
    response = client_as("researcher").get(reverse("pipelines:new"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "G: completions sampled per prompt" in html
    assert 'name="s0-num_generations"' in html and "R1: 16 · TRL: 8" in html


@pytest.mark.parametrize("override,field,needle", [
    ({"num_generations": 1}, "s0-num_generations", "at least 2"),
    ({"batch_size": 10}, "s0-batch_size", "not divisible by num_generations"),
    ({"learning_rate": "abc"}, "s0-learning_rate", "expected a number"),
])
def test_bad_values_are_rejected_per_field_before_anything_is_queued(client_as, inputs, override, field, needle):
    response = client_as("researcher").post(reverse("pipelines:new"), _form_data(*inputs, **override))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert needle in errors.get(field, [str(errors)])[0]
    assert PipelineRun.objects.count() == 0 and Stage.objects.count() == 0


def test_unknown_reward_is_rejected(client_as, inputs):
    data = _form_data(*inputs)
    data["s0-reward_funcs"] = "accuracy, vibes"
    response = client_as("researcher").post(reverse("pipelines:new"), data)
    assert "unknown reward 'vibes'" in response.context["form"].errors["s0-reward_funcs"][0]
    assert PipelineRun.objects.count() == 0


def test_a_valid_launch_creates_the_run_and_queues_its_first_stage(client_as, inputs, django_capture_on_commit_callbacks):
    client = client_as("researcher")
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("pipelines:new"), _form_data(*inputs, max_steps=7))
    run = PipelineRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("pipelines:detail", args=[run.pk])
    stage = run.stages.get()
    assert (stage.status, stage.attempt, stage.config["max_steps"], run.created_by) == ("queued", 1, 7, client.user)


def test_viewer_sees_no_buttons_and_gets_403_on_every_action(client_as, inputs):
    base, prompts = inputs
    plans = services.pipeline_plan(template=TEMPLATES["r1_zero"], configs=[dict(TINY_GRPO)], base_model=base, prompt_set=prompts)
    run = services.pipeline_run_create(name="r", template_key="r1_zero", plans=plans, user=None, base_model=base, prompt_set=prompts)
    stage = run.stages.get()
    client = client_as("viewer")
    page = client.get(reverse("pipelines:detail", args=[run.pk])).content.decode()
    assert "Resume" not in page and "Cancel run" not in page
    assert "New run" not in client.get(reverse("pipelines:list")).content.decode()
    for name, args in (("pipelines:run_cancel", [run.pk]), ("pipelines:stage_resume", [run.pk, stage.pk]),
                       ("pipelines:stage_retry", [run.pk, stage.pk]), ("pipelines:stage_cancel", [run.pk, stage.pk]),
                       ("pipelines:new", [])):
        assert client.post(reverse(name, args=args)).status_code == 403
    assert client.get(reverse("pipelines:workers")).status_code == 403


def test_run_page_shows_lineage_and_escapes_the_log(client_as, inputs, django_capture_on_commit_callbacks):
    base, prompts = inputs
    plans = services.pipeline_plan(template=TEMPLATES["r1_zero"], configs=[dict(TINY_GRPO)], base_model=base, prompt_set=prompts)
    run = services.pipeline_run_create(name="r", template_key="r1_zero", plans=plans, user=None, base_model=base, prompt_set=prompts)
    with django_capture_on_commit_callbacks(execute=False):
        services.pipeline_run_launch(run=run, user=None)
    stage = run.stages.get()
    start = attempts.stage_attempt_start(stage_id=stage.pk, attempt=1, worker_host="gpu-7", worker_pid=1)
    from pathlib import Path

    Path(start.attempt_dir).mkdir(parents=True)
    Path(start.attempt_dir, "trainer.log").write_text("step 1 <script>alert(1)</script>\n")
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=1, outputs=None, signalled_cancel=False)
    page = client_as("researcher").get(reverse("pipelines:detail", args=[run.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert base.name in page and prompts.name in page and "gpu-7" in page
    assert "Resume" in page and "trainer crashed (exit 1)" in page
    # the stage's curves: the tracked run's panels, with the filter box and the key groups
    assert "data-r1-charts" in page and "data-filter" in page and "data-groups" in page


def test_prompt_import_is_all_or_nothing_with_row_errors_then_preview_and_confirm(client_as):
    client = client_as("researcher")
    bad = b'{"prompt": "1+1", "answer": "2"}\n{"prompt": ""}\nnot json\n{"prompt": "2+2"}\n'
    response = client.post(reverse("pipelines:prompt_import"), {
        "name": "adds", "kind": "math", "eval_fraction": 0.25, "file": SimpleUploadedFile("p.jsonl", bad)}, follow=True)
    staged = response.context["staged"]
    errors = {e["line"]: e["message"] for e in staged.errors}
    assert set(errors) == {2, 3, 4} and "non-empty" in errors[2] and "not valid JSON" in errors[3]
    assert "gold answer" in errors[4]
    assert not staged.ok
    # confirming a staged file that has errors imports nothing
    response = client.post(reverse("pipelines:prompt_import_staged", args=[staged.token]))
    assert PromptSet.objects.count() == 0
    good = "".join(json.dumps({"prompt": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(8)).encode()
    response = client.post(reverse("pipelines:prompt_import"), {
        "name": "adds", "kind": "math", "eval_fraction": 0.25, "file": SimpleUploadedFile("p.jsonl", good)}, follow=True)
    staged = response.context["staged"]
    assert (staged.count, staged.n_eval) == (8, 2) and PromptSet.objects.count() == 0
    response = client.post(reverse("pipelines:prompt_import_staged", args=[staged.token]))
    ps = PromptSet.objects.get(name="adds")
    assert (ps.train_count, ps.eval_count) == (6, 2)
    from pathlib import Path

    assert len(Path(ps.train_path).read_text().splitlines()) == 6


def test_csv_import_reads_a_header(client_as):
    client = client_as("researcher")
    data = b'id,prompt,tests\nc1,write f,"[""assert f() == 1""]"\n'
    response = client.post(reverse("pipelines:prompt_import"), {
        "name": "code", "kind": "code", "eval_fraction": 0, "file": SimpleUploadedFile("p.csv", data)}, follow=True)
    assert response.context["staged"].preview_rows[0]["tests"] == ["assert f() == 1"]


def test_runs_list_filters_and_searches(client_as, inputs):
    base, prompts = inputs
    for name in ("alpha", "beta"):
        plans = services.pipeline_plan(template=TEMPLATES["r1_zero"], configs=[dict(TINY_GRPO)], base_model=base, prompt_set=prompts)
        services.pipeline_run_create(name=name, template_key="r1_zero", plans=plans, user=None, base_model=base, prompt_set=prompts)
    client = client_as("viewer")
    page = client.get(reverse("pipelines:list"), {"q": "alp"}).content.decode()
    assert "alpha" in page and "beta" not in page
    page = client.get(reverse("pipelines:list"), {"status": "running"}).content.decode()
    assert "alpha" not in page and "No runs match" in page


def test_workers_page_without_broadcast_says_why(client_as, settings):
    settings.REDIS_URL = ""
    page = client_as("researcher").get(reverse("pipelines:workers")).content.decode()
    assert "no broadcast" in page
