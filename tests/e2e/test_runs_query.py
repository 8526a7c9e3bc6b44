"""The runs list in a real browser (issue 17 part 3): a query finds runs, a header sorts by its
column, the view is the URL (reloading it shows the same), and a bad query says where it is wrong."""
import pytest
from django.db import transaction

from r1lab.tracking import store
from r1lab.tracking.services import tracked_run_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def make(name, lr, template, rewards):
    run, _ = tracked_run_create(name=name, config={"learning_rate": lr, "template": template})
    with transaction.atomic():  # through the store (the service would push live, which this thread cannot)
        sid = store.series_ids(run_id=run.pk, keys=["reward"])["reward"]
        store.insert_points(sids=[sid] * len(rewards), steps=list(range(len(rewards))), values=rewards,
                            tss=[0.0] * len(rewards))
    return run


def names(page):
    return page.locator("#runs-table tbody tr[data-run-id] td:nth-child(2) a").all_inner_texts()


def test_query_sort_columns_and_errors(page, live_asgi, login_as):
    make("lr1-high", 1e-6, "r1_zero", [0.2, 0.8])
    make("lr1-low", 1e-6, "r1_zero", [0.1, 0.4])
    make("lr3-high", 3e-6, "r1_zero", [0.3, 0.9])
    make("distill", 1e-6, "distill", [0.5, 0.95])
    login_as("viewer")
    page.goto(live_asgi + "/metrics/")
    page.fill("#runs-q", 'config.learning_rate < 2e-6 and reward.last > 0.6 and template = "r1_zero"')
    page.fill("#runs-cols", "config.learning_rate, reward.max")
    page.click("#runs-query button[type=submit]")
    page.wait_for_selector("[data-runs-count]")
    assert names(page) == ["lr1-high"]
    assert page.locator("[data-runs-count]").inner_text() == "1 run matches"
    headers = page.locator("#runs-table thead th").all_inner_texts()
    # the chosen columns, then (*) those the query reads
    assert headers[-4:] == ["CONFIG.LEARNING_RATE", "REWARD.MAX", "REWARD.LAST *", "CONFIG.TEMPLATE *"]

    # widen the query, sort by the reward column: descending, then ascending
    page.fill("#runs-q", "reward.last > 0.3")
    page.click("#runs-query button[type=submit]")
    page.wait_for_selector("[data-runs-count]:has-text('4 runs match')")
    page.click("th[data-col='reward.last'] a")
    page.wait_for_selector("th[data-col='reward.last'][aria-sort=descending]")
    assert names(page) == ["distill", "lr3-high", "lr1-high", "lr1-low"]
    page.click("th[data-col='reward.last'] a")
    page.wait_for_selector("th[data-col='reward.last'][aria-sort=ascending]")
    assert names(page) == ["lr1-low", "lr1-high", "lr3-high", "distill"]

    # the view is the URL: opened afresh, it shows the same
    url = page.url
    assert "sort=reward.last" in url and "q=reward.last" in url and "cols=config.learning_rate" in url
    page.goto("about:blank")
    page.goto(url)
    assert names(page) == ["lr1-low", "lr1-high", "lr3-high", "distill"]
    assert page.input_value("#runs-q") == "reward.last > 0.3"

    # a bad query: a message naming the column and what was expected, a caret under it, no rows
    page.fill("#runs-q", "reward.last > and status = 1")
    page.click("#runs-query button[type=submit]")
    err = page.locator("[data-query-error]")
    err.wait_for()
    assert "Query, column 15: expected a value" in err.inner_text()
    pre = err.locator("pre").inner_text().split("\n")
    assert pre[0] == "reward.last > and status = 1" and pre[1] == " " * 14 + "^"
    assert page.locator("#runs-table").count() == 0
    assert page.get_attribute("#runs-q", "aria-invalid") == "true"
