"""A resumed attempt rewinds its run (issue 15, finding 1: resume spliced two models into one curve).

Points are kept per (series, step) with ON CONFLICT DO NOTHING so that retries are harmless; a
resumed attempt that logs steps the crashed one had logged had its values dropped silently. A
rewind moves what earlier attempts logged after the resume point out of the curve into history.
"""
import json

import pytest

from r1lab.tracking import selectors
from r1lab.tracking.models import LostPoint, LostSample, Point, Rewind, Sample
from r1lab.tracking.services import (run_segments, tracked_run_create, tracked_run_rewind,
                                     tracked_run_rotate_token)

pytestmark = pytest.mark.django_db


def post(client, url, body, token):
    return client.post(url, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def log(client, run, token, steps, value, ts):
    body = {"metrics": [{"step": s, "key": "reward", "value": value(s), "ts": ts} for s in steps],
            "samples": [{"step": s, "prompt": "p", "completion": f"c{value(s)}", "rewards": {"accuracy": 1.0},
                         "group": 0, "index": 0} for s in steps]}
    r = post(client, f"/api/v1/runs/{run.pk}/log", body, token)
    assert r.status_code == 200, r.content


def curve(run, key="reward"):
    series = selectors.run_series_data(run=run, keys=[key])["series"][key]
    return dict(zip(series["x"], series["y"]))


@pytest.mark.parametrize("resume_after", [-1, 0, 10])
def test_the_resumed_attempt_makes_the_curve(client, resume_after):
    """Log 1–20, resume from scratch (-1, or 0 when step 0 is the start) or from a checkpoint at
    10, log different values: the curve shows the new ones, the old ones are history."""
    run, token = tracked_run_create(name="r")
    log(client, run, token, range(1, 21), lambda s: s / 100, ts=1000.0)
    r = post(client, f"/api/v1/runs/{run.pk}/rewind", {"step": resume_after}, token)
    assert r.status_code == 200, r.content
    assert r.json() == {"step": resume_after, "attempt": 2,
                        "lost": {"metrics": 20 - max(resume_after, 0), "samples": 20 - max(resume_after, 0)}}
    log(client, run, token, range(resume_after + 1 if resume_after >= 0 else 1, 21), lambda s: -s, ts=2000.0)
    kept = range(1, resume_after + 1)
    assert curve(run) == {**{s: s / 100 for s in kept}, **{s: -s for s in range(max(resume_after, 0) + 1, 21)}}
    assert all(p.ts == 2000.0 for p in Point.objects.filter(step__gt=max(resume_after, 0)))
    lost = LostPoint.objects.order_by("step")
    assert [(p.step, p.value, p.attempt) for p in lost] == [(s, s / 100, 1) for s in range(max(resume_after, 0) + 1, 21)]
    samples = Sample.objects.filter(run=run).order_by("step")
    assert [s.completion for s in samples] == [f"c{s / 100}" for s in kept] + [f"c{-s}" for s in range(max(resume_after, 0) + 1, 21)]
    assert LostSample.objects.count() == 20 - max(resume_after, 0)
    assert LostSample.objects.order_by("step").first().data["completion"] == f"c{(max(resume_after, 0) + 1) / 100}"


def test_without_a_rewind_the_old_values_stay(client):
    """What the rewind is for: ingest is idempotent per (key, step), a replay must not overwrite."""
    run, token = tracked_run_create(name="r")
    log(client, run, token, range(1, 6), lambda s: s, ts=1.0)
    log(client, run, token, range(1, 6), lambda s: -s, ts=2.0)
    assert curve(run) == {s: s for s in range(1, 6)}


def test_rewinds_label_each_lost_point_with_the_attempt_that_logged_it(client):
    run, token = tracked_run_create(name="r")
    log(client, run, token, range(1, 21), lambda s: 1.0, ts=1.0)   # attempt 1: 1..20
    token = tracked_run_rotate_token(run=run, attempt=2)            # a pipeline worker starts attempt 2
    tracked_run_rewind(run=run, after_step=15)
    log(client, run, token, range(16, 19), lambda s: 2.0, ts=2.0)  # attempt 2: 16..18, then crashes
    token = tracked_run_rotate_token(run=run, attempt=3)
    rw = tracked_run_rewind(run=run, after_step=10)                 # attempt 3 resumes from 10
    assert rw.attempt == 3 and rw.lost_points == 8
    assert sorted(LostPoint.objects.filter(rewind=rw).values_list("step", "attempt")) == \
        [(s, 1) for s in range(11, 16)] + [(s, 2) for s in range(16, 19)]
    run.refresh_from_db()
    assert run_segments(run=run) == [(1, 0), (3, 11)]
    assert run.attempt == 3


def test_an_api_rewind_starts_the_next_attempt_and_a_fresh_run_needs_none(client):
    run, token = tracked_run_create(name="r")
    assert tracked_run_rewind(run=run, after_step=-1) is None  # a first attempt's rewind: nothing to do
    assert not Rewind.objects.exists()
    log(client, run, token, range(3), lambda s: 1.0, ts=1.0)
    assert tracked_run_rewind(run=run, after_step=1).attempt == 2
    assert tracked_run_rewind(run=run, after_step=0).attempt == 3


def test_rollups_over_the_lost_steps_are_rebuilt_from_the_new_points(client):
    """A long series is read from rollups (PostgreSQL): the lost attempt's extremes must not survive."""
    run, token = tracked_run_create(name="r")
    n = 6000
    body = {"metrics": [{"step": s, "key": "reward", "value": 100.0 if s == 5000 else 0.0} for s in range(n)]}
    post(client, f"/api/v1/runs/{run.pk}/log", body, token)
    first = selectors.run_series_data(run=run, keys=["reward"], max_points=200)["series"]["reward"]
    assert max(first["y"]) == 100.0
    tracked_run_rewind(run=run, after_step=4000)
    body = {"metrics": [{"step": s, "key": "reward", "value": 1.0} for s in range(4001, n)]}
    post(client, f"/api/v1/runs/{run.pk}/log", body, token)
    again = selectors.run_series_data(run=run, keys=["reward"], max_points=200)["series"]["reward"]
    assert max(again["y"]) == 1.0 and again["total"] == n


REWIND_BAD = [({"step": -2}, "step: must be an integer from -1"), ({"step": "10"}, "step"), ({}, '{"step": k}'),
              ({"step": 1, "x": 2}, '{"step": k}'), ({"step": 2**63}, "step")]


@pytest.mark.parametrize("body,fragment", REWIND_BAD, ids=[f for _, f in REWIND_BAD])
def test_rewind_bad_input(client, body, fragment):
    run, token = tracked_run_create(name="r")
    log(client, run, token, range(3), lambda s: 1.0, ts=1.0)
    r = post(client, f"/api/v1/runs/{run.pk}/rewind", body, token)
    assert r.status_code == 400 and fragment in r.json()["error"]
    assert not Rewind.objects.exists() and Point.objects.count() == 3


def test_rewind_needs_the_runs_own_token(client):
    run, token = tracked_run_create(name="r")
    _, other = tracked_run_create(name="o")
    assert post(client, f"/api/v1/runs/{run.pk}/rewind", {"step": 1}, other).status_code == 403
    assert client.post(f"/api/v1/runs/{run.pk}/rewind", data="{}", content_type="application/json").status_code == 401


def test_the_lost_history_is_read_with_the_curve_thinned_per_attempt(client):
    run, token = tracked_run_create(name="r")
    log(client, run, token, range(1, 101), lambda s: 1.0, ts=1.0)
    tracked_run_rewind(run=run, after_step=10)
    run.refresh_from_db()
    data = selectors.run_series_data(run=run, keys=["reward"], max_points=20)
    (seg,) = data["lost"]["reward"]
    assert seg["attempt"] == 1 and seg["x"][0] == 11 and seg["x"][-1] == 100 and len(seg["x"]) <= 22
    page = selectors.run_page_data(run=run)
    assert page["lost"]["reward"][0]["attempt"] == 1
    fresh, _ = tracked_run_create(name="fresh")
    assert "lost" not in selectors.run_series_data(run=fresh)  # no rewind: no extra query
