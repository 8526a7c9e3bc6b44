"""The metric store: idempotent bulk insert, the min/max downsampler (raw and through rollups)."""
import math
import random

import pytest
from django.db import connection

from r1lab.tracking import store
from r1lab.tracking.models import Rollup, Series
from r1lab.tracking.services import tracked_run_create

pytestmark = pytest.mark.django_db(transaction=True)


def _series(key="reward"):
    run, _ = tracked_run_create(name="s")
    return store.series_ids(run_id=run.pk, keys=[key])[key]


def _insert(sid, steps, values):
    return store.insert_points(sids=[sid] * len(steps), steps=list(steps), values=list(values), tss=[1000.0 + s for s in steps])


def test_insert_is_idempotent_and_counts_new_points():
    sid = _series()
    assert _insert(sid, range(100), [0.0] * 100) == 100
    assert _insert(sid, range(50, 150), [1.0] * 100) == 50
    w = store.series_window(sid=sid, max_points=1000)
    assert w["total"] == 150 and w["x"] == list(range(150))
    assert w["y"][49] == 0.0 and w["y"][50] == 0.0 and w["y"][100] == 1.0  # first write wins


@pytest.mark.parametrize("n", [5_000, 200_000])
def test_downsampler_keeps_a_single_step_spike(n):
    sid = _series()
    rng = random.Random(1)
    values = [math.sin(s / 500) + rng.gauss(0, 0.01) for s in range(n)]
    spike_step = n // 3 + 7
    values[spike_step] = 50.0
    dip_step = 2 * n // 3 + 3
    values[dip_step] = -50.0
    _insert(sid, range(n), values)
    for _ in range(2):  # the second read goes through the rollups built by the first
        w = store.series_window(sid=sid, max_points=1000)
        assert len(w["x"]) <= 1000 and w["downsampled"] and w["total"] == n
        assert (spike_step, 50.0) in zip(w["x"], w["y"])
        assert (dip_step, -50.0) in zip(w["x"], w["y"])
        assert w["x"] == sorted(w["x"])
        assert max(w["y"]) == 50.0 and min(w["y"]) == -50.0


def test_rollups_agree_with_raw_buckets_and_zoom_is_exact():
    sid = _series()
    rng = random.Random(7)
    n = 70_000
    values = [rng.random() for _ in range(n)]
    _insert(sid, range(n), values)
    w = store.series_window(sid=sid, max_points=500)
    # each emitted point is a real point
    for x, y in zip(w["x"], w["y"]):
        assert values[x] == y
    # zooming to a small range returns every point
    z = store.series_window(sid=sid, min_step=1000, max_step=1400, max_points=500)
    assert z["x"] == list(range(1000, 1401)) and not z["downsampled"]
    # the bucket extremes match a brute-force min/max over the same buckets
    mid = store.series_window(sid=sid, min_step=10_000, max_step=60_000, max_points=200)
    assert mid["total"] == 50_001
    assert max(mid["y"]) == max(values[10_000:60_001]) and min(mid["y"]) == min(values[10_000:60_001])
    # ranges that cut rollup buckets on either side, or fall inside one: the edges are read raw
    for lo, hi in [(1, 69_998), (63, 65), (70, 129), (4_097, 4_100), (5, 60_001), (69_990, 69_999)]:
        w = store.series_window(sid=sid, min_step=lo, max_step=hi, max_points=100)
        assert w["total"] == hi - lo + 1
        assert max(w["y"]) == max(values[lo:hi + 1]) and min(w["y"]) == min(values[lo:hi + 1])
        assert lo <= min(w["x"]) and max(w["x"]) <= hi


@pytest.mark.skipif(connection.vendor != "postgresql", reason="rollups are PostgreSQL's; SQLite reads raw points")
def test_late_point_invalidates_rollups():
    sid = _series()
    _insert(sid, range(0, 100_000, 1), [1.0] * 100_000)
    store.series_window(sid=sid, max_points=200)
    assert Series.objects.get(pk=sid).rollup_upto > 90_000
    assert Rollup.objects.filter(series_id=sid).exists()
    # a late point in an already rolled-up range (a gap filled)... steps are unique, so use a new key range:
    sid2 = _series("kl")
    _insert(sid2, [s for s in range(100_000) if s != 5_000], [1.0] * 99_999)
    store.series_window(sid=sid2, max_points=200)
    assert Series.objects.get(pk=sid2).rollup_upto >= 5_000
    _insert(sid2, [5_000], [99.0])
    assert Series.objects.get(pk=sid2).rollup_upto < 5_000
    w = store.series_window(sid=sid2, max_points=200)
    assert (5_000, 99.0) in zip(w["x"], w["y"]) and w["total"] == 100_000
