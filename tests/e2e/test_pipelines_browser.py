"""A researcher launches a run from the browser and watches it learn, live; a viewer cannot launch.

Real parts only: daphne on the test database, a real Celery worker on the Redis broker, the real
trainer on the tiny model, Chromium."""
from __future__ import annotations

import re

import pytest

from r1lab.pipelines.models import PipelineRun
from tests.e2e.conftest import server_env
from tests.pipelines.factories import BaseModelFactory, PromptSetFactory, write_prompts
from tests.pipelines.worker import purge_queues, start_worker, tiny_base, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TINY_FORM = {  # the few fields a researcher changes for a CPU-sized run
    "s0-max_steps": "30", "s0-batch_size": "8", "s0-max_completion_length": "24", "s0-max_prompt_length": "24",
    "s0-learning_rate": "0.001", "s0-beta": "0", "s0-save_steps": "50", "s0-log_samples": "4",
    "s0-torch_threads": "1", "s0-eval_max_prompts": "4",
}

RECORD_WIDTHS = """() => {
  window.__marker = "same page";
  window.__widths = [];
  window.__statuses = [];
  const bar = document.querySelector("[data-stage-progress]");
  const badge = document.getElementById("run-status");
  new MutationObserver(() => window.__widths.push(parseFloat(bar.style.width))).observe(bar, {attributes: true});
  new MutationObserver(() => window.__statuses.push(badge.textContent)).observe(badge, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture
def worker(live_asgi, tmp_path, settings):
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    purge_queues()
    env = worker_env(server_env(), data_dir=settings.R1LAB_DATA_DIR, public_url=live_asgi)
    w = start_worker(env, tmp_path, queues="gpu,default")
    yield w
    w.stop()


def test_researcher_launches_sees_the_error_then_watches_status_and_progress_live(page, live_asgi, login_as, worker, tmp_path):
    train, ev = write_prompts(tmp_path / "prompts", n=32, n_eval=4)
    base = BaseModelFactory(name="tiny-base", path=str(tiny_base()))
    prompts = PromptSetFactory(name="additions", train_path=str(train), eval_path=str(ev), train_count=32, eval_count=4)
    login_as("researcher")
    page.goto(live_asgi + "/runs/")
    page.click("#new-run")
    page.fill("#id_name", "watch me learn")
    page.select_option("#id_base_model", str(base.pk))
    page.select_option("#id_prompt_set", str(prompts.pk))
    for name, value in TINY_FORM.items():
        page.fill(f'[name="{name}"]', value)
    page.select_option('[name="s0-engine"]', "torch")
    page.fill('[name="s0-num_generations"]', "1")  # a bad value first
    page.click("#launch")
    error = page.locator('[data-field="num_generations"] .field-error')
    assert "G must be at least 2" in error.inner_text()
    assert PipelineRun.objects.count() == 0  # nothing queued

    page.fill('[name="s0-num_generations"]', "4")
    page.click("#launch")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    page.wait_for_selector("#live-indicator:has-text('live')")
    page.evaluate(RECORD_WIDTHS)
    badge = page.locator("#run-status")
    page.wait_for_function("document.getElementById('run-status').textContent === 'running'", timeout=120_000)
    page.wait_for_function("document.getElementById('run-status').textContent === 'succeeded'", timeout=180_000)
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    widths = page.evaluate("window.__widths")
    assert len({w for w in widths if 0 < w < 100}) >= 2, widths  # the bar moved through the run
    assert widths[-1] == 100.0
    statuses = page.evaluate("window.__statuses")
    assert "running" in statuses and statuses[-1] == "succeeded"
    assert badge.inner_text() == "succeeded"
    assert "step 30/30" in page.locator("[data-stage-progress-label]").inner_text()
    run = PipelineRun.objects.get()
    assert run.status == "succeeded" and run.stages.get().config["num_generations"] == 4


def test_viewer_sees_no_launch_button_and_gets_403_posting_anyway(page, live_asgi, login_as):
    login_as("viewer")
    page.goto(live_asgi + "/runs/")
    assert page.locator("#new-run").count() == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(live_asgi + "/runs/new/", form={"template": "r1_zero", "name": "sneaky"},
                                 headers={"X-CSRFToken": csrf, "Referer": live_asgi + "/runs/"})
    assert response.status == 403
    assert PipelineRun.objects.count() == 0
