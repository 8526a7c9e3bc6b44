"""Fork at step k in a real browser: the pipeline run page lists the stage's checkpoints (the
rotated one cannot be forked) and marks them on the chart; "Fork here" opens the launch form
prefilled with the parent's config, an edit is marked as differing from the parent, and launching
makes the fork, whose page names its parent's checkpoint. A chart marker opens the form too."""
import json

import pytest

from r1lab.pipelines import services
from r1lab.pipelines.models import PipelineRun
from r1lab.pipelines.stage_templates import custom_template
from r1lab.tracking.services import tracked_run_create
from tests.e2e.test_tracking import metrics, post_log
from tests.factories import UserFactory
from tests.pipelines.factories import TINY_GRPO, BaseModelFactory, PromptSetFactory
from tests.pipelines.worker import purge_queues
from training_backend import stage as contract

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_fork_here_from_the_checkpoint_list_and_from_the_chart(page, live_asgi, login_as, tmp_path):
    base = BaseModelFactory(path=str(tmp_path))
    prompts = PromptSetFactory(train_path=str(tmp_path / "p.jsonl"))
    plans = services.pipeline_plan(template=custom_template(["grpo"]), configs=[{**TINY_GRPO, "max_steps": 3}],
                                   base_model=base, prompt_set=prompts, check_paths=False)
    parent_run = services.pipeline_run_create(name="parent run", template_key="custom", plans=plans,
                                              user=UserFactory(role="researcher"), base_model=base, prompt_set=prompts)
    stage = parent_run.stages.get()
    tracked, token = tracked_run_create(name="parent run · grpo")
    stage.tracked_run, stage.output_dir = tracked, str(tmp_path / "out")
    stage.outputs = {"step": 3}
    stage.save()
    for step in (2, 3):  # save_total_limit kept the last two; step 1 was rotated away
        folder = contract.checkpoint_path(stage.output_dir, step)
        folder.mkdir(parents=True)
        (folder / contract.TRAINER_STATE).write_text(json.dumps({"step": step}))
    post_log(live_asgi, tracked, token, metrics(range(1, 4)))

    login_as("researcher")
    page.goto(f"{live_asgi}/runs/{parent_run.pk}/")
    assert page.locator("[data-checkpoint='1']").inner_text().count("deleted by rotation") == 1
    assert page.locator("[data-checkpoint='1'] [data-fork-step]").count() == 0
    page.wait_for_selector("[data-r1-charts][data-ready='1']")
    marks = page.evaluate("""() => document.querySelector('[data-panel=reward] .chart-plot').layout.annotations
        .filter(a => a.r1marker !== undefined).map(a => [a.x, a.text])""")
    assert marks == [[2, "◆"], [3, "◆"]]

    page.click("[data-fork-step='2']")
    page.wait_for_url("**/fork/?step=2")
    form = page.locator("[data-fork-form]")
    assert form.get_attribute("data-diffs") == "0" and page.locator(".field.differs").count() == 0
    assert page.input_value('[name="s0-learning_rate"]') == "0.001"
    page.fill('[name="s0-learning_rate"]', "0.05")
    lr = page.locator('[data-field="learning_rate"]')
    assert "differs" in lr.get_attribute("class") and lr.locator(".parent-value").inner_text() == "parent: 0.001"
    assert page.locator("[data-diff-summary]").inner_text() == "1 value differs from the parent"
    page.fill('[name="name"]', "lr 0.05 from 2")
    page.click("#launch")
    page.wait_for_selector("[data-fork-of]")
    fork = PipelineRun.objects.get(name="lr 0.05 from 2")
    assert page.url.endswith(f"/runs/{fork.pk}/")
    assert "Fork of parent run" in page.locator("[data-fork-of]").inner_text()
    assert fork.stages.get().config["learning_rate"] == 0.05
    assert page.locator(f"[data-edge='fork-parent-{stage.pk}→stage-0']").count() == 1

    # the chart's marker of step 3 opens the fork form at step 3
    page.goto(f"{live_asgi}/runs/{parent_run.pk}/")
    page.wait_for_selector("[data-r1-charts][data-ready='1']")
    page.evaluate("""() => { const gd = document.querySelector('[data-panel=reward] .chart-plot');
        const i = gd.layout.annotations.findIndex(a => a.r1marker === 3);
        gd.emit('plotly_clickannotation', {index: i, annotation: gd.layout.annotations[i]}); }""")
    page.wait_for_url("**/fork/?step=3")
    assert page.locator("[data-fork-of], h1").first.inner_text() == "Fork at step 3"
    purge_queues()  # the launched fork's message: no worker here, none may pick it up later
