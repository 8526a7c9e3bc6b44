"""The prompt-lineage page in a real browser: reached from the rollouts page, the class counts over
steps drawn, a class picked, a column sorted, a prompt opened across steps, a class exported as a
prompt set in one click."""
import pytest

from r1lab.pipelines.models import PromptSet
from r1lab.tracking.services import tracked_run_create
from tests.e2e.test_tracking import post_log
from tests.rollouts.helpers import XSS, log_hand_built

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_lineage_page_classes_chart_sort_drill_down_and_export(page, live_asgi, login_as):
    run, token = tracked_run_create(name="lineage-browser")
    log_hand_built(run, prompts={"E": XSS}, send=lambda r, batch: post_log(live_asgi, r, token, {"samples": batch}))
    login_as("researcher")
    page.goto(f"{live_asgi}/rollouts/runs/{run.pk}/")
    page.click("[data-lineage-link]")
    page.wait_for_url(f"**/rollouts/runs/{run.pk}/lineage/")
    page.wait_for_selector("[data-lineage-chart][data-ready='1']")
    traces = page.evaluate("() => document.querySelector('[data-lineage-chart]').data.map(t => [t.name, t.y])")
    assert ["learned", [0, 0, 1]] in traces and ["never solved", [2, 1, 1]] in traces and len(traces) == 6
    assert page.locator("[data-class='forgotten'] [data-count]").inner_text() == "1"
    assert page.locator("td.prompt-cell", has_text="<script>").count() == 1  # model-facing text stays text

    page.click("[data-class='always'] a")
    page.wait_for_url("**cls=always**")
    assert page.locator("[data-lineage-table] tbody tr").evaluate_all("rows => rows.map(r => r.dataset.prompt)") == ["C", "F"]
    page.click("[data-sort='last_rate']")  # all prompts of the class, lowest last rate first
    page.wait_for_url("**sort=last_rate**")
    page.goto(f"{live_asgi}/rollouts/runs/{run.pk}/lineage/?sort=-delta")
    assert page.locator("[data-lineage-table] tbody tr").first.get_attribute("data-prompt") == "A"

    page.click("[data-lineage-table] tbody tr[data-prompt='A'] td:first-child a")
    page.wait_for_url("**prompt_id=A")
    assert page.locator("h1").inner_text() == "Prompt A across steps"
    page.go_back()

    page.click("[data-export='never']")
    page.wait_for_selector(".msg.success")
    assert "Exported 1 never solved prompts" in page.locator(".msg.success").inner_text()
    exported = PromptSet.objects.get(source_run=run)
    assert exported.source_class == "never" and page.locator(f"[data-exported='{exported.pk}']").count() == 1
