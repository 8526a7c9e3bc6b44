"""Per-series summaries (Series.last_step/last_value/min_value/max_value), kept by ingest: what the
runs list's query (`reward.last > 0.6`, issue 17 part 3) filters and sorts 10,000 runs by without
reading their points. Before them there was no such column: every test here failed."""
import json

import pytest

from r1lab.tracking import selectors, store
from r1lab.tracking.models import Series
from r1lab.tracking.services import tracked_run_create

pytestmark = pytest.mark.django_db


def log(client, run, token, points):
    body = {"metrics": [{"step": s, "key": k, "value": v} for k, s, v in points]}
    r = client.post(f"/api/v1/runs/{run.pk}/log", data=json.dumps(body), content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 200, r.content


def summary(run, key="reward"):
    s = Series.objects.get(run=run, key=key)
    return s.last_step, s.last_value, s.min_value, s.max_value


def test_ingest_keeps_last_min_max(client):
    run, token = tracked_run_create(name="r")
    log(client, run, token, [("reward", 3, 0.5), ("reward", 1, -2.0), ("reward", 2, 9.0), ("kl", 1, 0.1)])
    assert summary(run) == (3, 0.5, -2.0, 9.0)
    assert summary(run, "kl") == (1, 0.1, 0.1, 0.1)
    # a late point (below the last step) moves the extremes, never the last value
    log(client, run, token, [("reward", 0, 12.0)])
    assert summary(run) == (3, 0.5, -2.0, 12.0)
    # a newer step moves the last value
    log(client, run, token, [("reward", 7, 0.25)])
    assert summary(run) == (7, 0.25, -2.0, 12.0)
    assert selectors.runs_latest_values(run_ids=[run.pk], keys=["reward", "kl"]) == {run.pk: {"reward": 0.25, "kl": 0.1}}


def test_a_retry_with_other_values_changes_nothing(client):
    """The first value logged at a step is the point, so it is the summary too."""
    run, token = tracked_run_create(name="r")
    log(client, run, token, [("reward", s, float(s)) for s in range(5)])
    log(client, run, token, [("reward", s, 100.0 + s) for s in range(5)])  # the same steps again
    assert summary(run) == (4, 4.0, 0.0, 4.0)
    # and within one batch: the same step twice keeps the first
    log(client, run, token, [("reward", 9, 1.5), ("reward", 9, 99.0)])
    assert summary(run) == (9, 1.5, 0.0, 4.0)


def test_a_rewind_recomputes_the_summary(client):
    run, token = tracked_run_create(name="r")
    log(client, run, token, [("reward", s, float(s)) for s in range(1, 11)] + [("late", 8, 5.0)])
    r = client.post(f"/api/v1/runs/{run.pk}/rewind", data=json.dumps({"step": 4}), content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 200, r.content
    assert summary(run) == (4, 4.0, 1.0, 4.0)
    assert summary(run, "late") == (None, None, None, None)  # no point left
    log(client, run, token, [("reward", 5, -1.0)])
    assert summary(run) == (5, -1.0, -1.0, 4.0)


def test_store_insert_keeps_summaries_directly():
    run, _ = tracked_run_create(name="s")
    sid = store.series_ids(run_id=run.pk, keys=["x"])["x"]
    store.insert_points(sids=[sid] * 3, steps=[10, 20, 30], values=[3.0, 1.0, 2.0], tss=[0.0] * 3)
    assert summary(run, "x") == (30, 2.0, 1.0, 3.0)


def test_a_mixed_batch_matches_a_full_recompute():
    """Ingest's two PostgreSQL paths (a batch all past each series' end is COPYed and folded; any
    other batch skips what is stored and folds what it inserted) leave the summaries a full
    recompute would, here with new, retried, late and repeated steps in one batch."""
    run, _ = tracked_run_create(name="m")
    ids = store.series_ids(run_id=run.pk, keys=["a", "b", "c"])
    a, b, c = ids["a"], ids["b"], ids["c"]
    assert store.insert_points(sids=[a, a, b], steps=[0, 1, 5], values=[1.0, 2.0, 3.0], tss=[0.0] * 3) == 3
    # a: a retry of step 1 (other value) and a new step 2; b: a late step 2 and a repeated step 9; c: new
    n = store.insert_points(sids=[a, a, b, b, b, c], steps=[1, 2, 2, 9, 9, 4], values=[50.0, -1.0, 7.0, 0.5, 60.0, 8.0],
                            tss=[0.0] * 6)
    assert n == 4  # a@2, b@2, b@9 (first value), c@4
    kept = {key: summary(run, key) for key in "abc"}
    assert kept == {"a": (2, -1.0, -1.0, 2.0), "b": (9, 0.5, 0.5, 7.0), "c": (4, 8.0, 8.0, 8.0)}
    store.recompute_summaries([a, b, c])
    assert {key: summary(run, key) for key in "abc"} == kept
