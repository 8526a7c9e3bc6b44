"""The rollout browser's sample queries (rollouts.selectors owns every read of Sample rows)."""
import json

import pytest

from r1lab.rollouts import selectors
from r1lab.tracking.services import tracked_run_create

pytestmark = pytest.mark.django_db


def log(client, run, token, body):
    r = client.post(f"/api/v1/runs/{run.pk}/log", data=json.dumps(body), content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 200, r.content


def test_samples_selectors_serve_the_rollout_browser(client):
    r, token = tracked_run_create(name="rollouts")
    samples = []
    for g in range(3):
        for i in range(4):
            acc = 1.0 if (g == 0 or i == 0) and g != 2 else 0.0
            samples.append({"step": 5, "group": g, "index": i, "prompt": f"p{g}", "completion": "<think>wait</think>" if i == 1 else "x" * (10 * i),
                            "rewards": {"accuracy": acc}, "advantage": 0.1 * i, "truncated": i == 3, "language_consistency": 0.5 if i == 2 else 1.0})
    log(client, r, token, {"samples": samples})
    step = selectors.samples_filter(run=r, step=5)
    assert [(s.group, s.index) for s in step] == [(g, i) for g in range(3) for i in range(4)]
    assert {s.group for s in selectors.samples_filter(run=r, zero_std=True)} == {0, 2}
    assert selectors.samples_filter(run=r, correct=True).count() == 5
    assert selectors.samples_filter(run=r, truncated=True).count() == 3
    assert selectors.samples_filter(run=r, language_mixed=True).count() == 3
    assert selectors.samples_filter(run=r, has_reflection=True).count() == 3
    assert [s.advantage for s in selectors.samples_filter(run=r, step=5, order="-advantage")][:3] == [0.30000000000000004] * 3
    assert selectors.run_sample_steps(run=r) == [5]
