"""POST /api/v1/runs/{id}/config: a run's config set after it was created (W&B's `config.update`,
which r1lab_client.wandb sends). Every bad input is a 4xx that changes nothing."""
import json

import pytest
from django.test import override_settings

from r1lab.accounts.services import api_token_create
from r1lab.tracking.models import Run
from r1lab.tracking.services import tracked_run_create

pytestmark = pytest.mark.django_db


def post(client, run, body, token, raw=False):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(f"/api/v1/runs/{run.pk}/config", data=body if raw else json.dumps(body),
                       content_type="application/json", **headers)


def test_config_keys_are_set_and_the_others_kept(client):
    run, token = tracked_run_create(name="r", config={"lr": 1e-6, "model": "tiny"})
    r = post(client, run, {"config": {"lr": 3e-6, "beta": 0.04, "reward_funcs": ["accuracy", "format"]}}, token)
    assert r.status_code == 200, r.content
    expected = {"lr": 3e-6, "model": "tiny", "beta": 0.04, "reward_funcs": ["accuracy", "format"]}
    assert r.json() == {"id": run.pk, "config": expected}
    assert Run.objects.get(pk=run.pk).config == expected


BAD = [
    ("no token", None, {"config": {}}, False, 401, "Authorization"),
    ("another run's token", "other", {"config": {"a": 1}}, False, 403, "another run"),
    ("personal token", "personal", {"config": {"a": 1}}, False, 403, "personal token"),
    ("not JSON", "ok", b'{"config": {', True, 400, "not valid JSON"),
    ("NaN", "ok", b'{"config": {"a": NaN}}', True, 400, "not valid JSON"),
    ("not an object", "ok", ["a"], False, 400, '{"config": {...}}'),
    ("config missing", "ok", {"lr": 1}, False, 400, '{"config": {...}}'),
    ("config not an object", "ok", {"config": [1, 2]}, False, 400, '{"config": {...}}'),
    ("unknown field beside config", "ok", {"config": {}, "summary": {}}, False, 400, '{"config": {...}}'),
    ("NUL in a key", "ok", {"config": {"a\x00": 1}}, False, 400, "config (a key): must not contain NUL"),
    ("NUL in a value", "ok", {"config": {"a": ["x\x00"]}}, False, 400, "config.a[0]: must not contain NUL"),
]


@pytest.mark.parametrize("case,token_kind,body,raw,status,fragment", BAD, ids=[c[0] for c in BAD])
def test_bad_config_update_is_refused_and_changes_nothing(client, make_user, case, token_kind, body, raw, status, fragment):
    run, token = tracked_run_create(name="r", config={"lr": 1e-6})
    token = {"ok": token, None: None, "other": tracked_run_create(name="o")[1],
             "personal": api_token_create(user=make_user("researcher"))[1] if token_kind == "personal" else None}[token_kind]
    r = post(client, run, body, token, raw=raw)
    assert r.status_code == status, r.content
    assert fragment in r.json()["error"]
    assert Run.objects.get(pk=run.pk).config == {"lr": 1e-6}


@override_settings(R1LAB_INGEST_MAX_BYTES=1000)
def test_config_over_the_body_limit_is_413(client):
    run, token = tracked_run_create(name="r", config={"lr": 1e-6})
    r = post(client, run, {"config": {"notes": "x" * 2000}}, token)
    assert r.status_code == 413 and Run.objects.get(pk=run.pk).config == {"lr": 1e-6}


def test_get_is_405_and_the_endpoint_is_in_the_openapi_document(client):
    run, token = tracked_run_create(name="r")
    assert client.get(f"/api/v1/runs/{run.pk}/config", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405
    assert "/runs/{id}/config" in client.get("/api/v1/openapi.json").json()["paths"]
