"""The run page shows, next to a stage, how isolated its model code ran (outputs.json
"code_sandbox", written by the trainer), escaped: the trainer's output is untrusted."""
from __future__ import annotations

import pytest
from django.urls import reverse

from r1lab.pipelines import attempts, services
from r1lab.pipelines.stage_templates import TEMPLATES
from tests.pipelines.factories import TINY_GRPO, BaseModelFactory, PromptSetFactory, write_prompts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.R1LAB_DATA_DIR = tmp_path / "data"


def finished_run(tmp_path, django_capture_on_commit_callbacks, outputs: dict):
    model = tmp_path / "model"
    model.mkdir()
    train, ev = write_prompts(tmp_path / "p")
    base, prompts = BaseModelFactory(path=str(model)), PromptSetFactory(train_path=str(train), eval_path=str(ev))
    plans = services.pipeline_plan(template=TEMPLATES["r1_zero"], configs=[dict(TINY_GRPO, reward_funcs=["code"])],
                                   base_model=base, prompt_set=prompts)
    run = services.pipeline_run_create(name="r", template_key="r1_zero", plans=plans, user=None, base_model=base,
                                       prompt_set=prompts)
    with django_capture_on_commit_callbacks(execute=False):
        services.pipeline_run_launch(run=run, user=None)
    stage = run.stages.get()
    attempts.stage_attempt_start(stage_id=stage.pk, attempt=1, worker_host="gpu-7", worker_pid=1)
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=1, exit_code=0, outputs=outputs, signalled_cancel=False)
    return run


def test_run_page_shows_the_code_sandbox_level_next_to_the_stage_escaped(client_as, tmp_path,
                                                                        django_capture_on_commit_callbacks):
    outputs = {"kind": "grpo", "status": "succeeded", "step": 3, "code_sandbox": {
        "level": "partial", "mechanism": "unshare", "unsandboxed_allowed": True,
        "missing": ["filesystem: sees /srv/<script>alert(1)</script>"]}}
    run = finished_run(tmp_path, django_capture_on_commit_callbacks, outputs)
    response = client_as("viewer").get(reverse("pipelines:detail", args=[run.pk]))
    page = response.content.decode()
    dd = page.split("data-code-sandbox>", 1)[1].split("</dd>", 1)[0]
    assert ">partial</span> unshare" in dd and "allow_unsandboxed_code" in dd
    assert "missing: filesystem: sees /srv/&lt;script&gt;alert(1)&lt;/script&gt;" in dd
    assert "<script>alert(1)" not in page


def test_run_page_shows_no_sandbox_line_for_a_stage_without_the_code_reward(client_as, tmp_path,
                                                                          django_capture_on_commit_callbacks):
    run = finished_run(tmp_path, django_capture_on_commit_callbacks, {"kind": "grpo", "status": "succeeded", "step": 3})
    page = client_as("viewer").get(reverse("pipelines:detail", args=[run.pk])).content.decode()
    assert "data-code-sandbox" not in page
