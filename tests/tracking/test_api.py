"""The ingest API: good batches stored once, every bad input rejected whole with its status."""
import json

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from r1lab.accounts.services import api_token_create
from r1lab.tracking.models import Point, Run, Sample, Series
from r1lab.tracking.services import tracked_run_create
from tests.asgi_client import asgi_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_and_token():
    return tracked_run_create(name="r", project="p")


def post(client, url, body, token=None, raw=False):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if raw else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def log_url(run):
    return f"/api/v1/runs/{run.pk}/log"


def good_body(step=1):
    return {
        "metrics": [{"step": step, "key": "reward", "value": 0.5}, {"step": step, "key": "kl", "value": 0.01, "ts": 1700000000.5}],
        "samples": [
            {"step": step, "prompt": "1+1?", "completion": "<think>wait, 2</think><answer>2</answer>",
             "rewards": {"accuracy": 1.0, "format": 1.0}, "advantage": 0.7, "group": 0, "index": 0},
            {"step": step, "prompt": "1+1?", "completion": "<think>3</think><answer>3</answer>",
             "rewards": {"accuracy": 0.0, "format": 1.0}, "advantage": -0.7, "group": 0, "index": 1, "truncated": False},
        ],
    }


def test_log_stores_points_and_samples(client, run_and_token):
    run, token = run_and_token
    r = post(client, log_url(run), good_body(), token)
    assert r.status_code == 200, r.content
    assert r.json() == {"accepted": {"metrics": 2, "samples": 2}, "stored": {"metrics": 2, "samples": 2}}
    assert sorted(Series.objects.filter(run=run).values_list("key", flat=True)) == ["kl", "reward"]
    kl = Point.objects.get(series__run=run, series__key="kl")
    assert (kl.step, kl.value, kl.ts) == (1, 0.01, 1700000000.5)
    s0, s1 = Sample.objects.filter(run=run).order_by("index")
    assert (s0.correct, s1.correct) == (True, False)
    assert s0.reward == 2.0 and s0.advantage == 0.7
    assert s0.think == "wait, 2" and s0.answer == "2"
    assert s0.reflection_count == 1 and s1.reflection_count == 0
    assert s0.zero_std_group is False
    run.refresh_from_db()
    assert run.last_seen_at is not None


def test_retry_is_idempotent(client, run_and_token):
    run, token = run_and_token
    assert post(client, log_url(run), good_body(), token).status_code == 200
    again = post(client, log_url(run), good_body(), token)
    assert again.status_code == 200
    assert again.json() == {"accepted": {"metrics": 2, "samples": 2}, "stored": {"metrics": 0, "samples": 0}}
    assert Point.objects.filter(series__run=run).count() == 2
    assert Sample.objects.filter(run=run).count() == 2


def test_samples_without_index_are_idempotent_too(client, run_and_token):
    run, token = run_and_token
    body = {"samples": [{"step": 3, "prompt": "p", "completion": "same", "rewards": {"accuracy": 1}},
                        {"step": 3, "prompt": "p", "completion": "same", "rewards": {"accuracy": 1}}]}
    assert post(client, log_url(run), body, token).json()["stored"]["samples"] == 2
    assert post(client, log_url(run), body, token).json()["stored"]["samples"] == 0
    s = Sample.objects.filter(run=run)
    assert s.count() == 2 and all(x.zero_std_group for x in s)


def _other_run_token():
    return tracked_run_create(name="other")[1]


def _personal_token(make_user):
    return api_token_create(user=make_user("researcher"))[1]


LONG_KEY = "k" * 201
BAD_INPUTS = [
    # (case, token kind, body, raw?, status, message fragment)
    ("no token", None, {"metrics": []}, False, 401, "Authorization"),
    ("wrong token", "garbage", {"metrics": []}, False, 401, "invalid token"),
    ("another run's token", "other", {"metrics": []}, False, 403, "another run"),
    ("personal token", "personal", {"metrics": []}, False, 403, "personal token"),
    ("malformed JSON", "ok", b'{"metrics": [', True, 400, "not valid JSON"),
    ("not an object", "ok", [1, 2], False, 400, "JSON object"),
    ("unknown top-level field", "ok", {"metric": []}, False, 400, "unknown field"),
    ("missing step", "ok", {"metrics": [{"key": "a", "value": 1}]}, False, 400, "metrics[0]: missing field 'step'"),
    ("missing value", "ok", {"metrics": [{"key": "a", "step": 1}]}, False, 400, "metrics[0]: missing field 'value'"),
    ("non-numeric value", "ok", {"metrics": [{"key": "a", "step": 1, "value": "high"}]}, False, 400, "metrics[0].value"),
    ("NaN literal", "ok", b'{"metrics": [{"key": "a", "step": 1, "value": NaN}]}', True, 400, "not valid JSON"),
    ("NaN string", "ok", {"metrics": [{"key": "a", "step": 1, "value": "nan"}]}, False, 400, "finite"),
    ("infinite value", "ok", b'{"metrics": [{"key": "a", "step": 1, "value": 1e999}]}', True, 400, None),
    ("boolean value", "ok", {"metrics": [{"key": "a", "step": 1, "value": True}]}, False, 400, "metrics[0].value"),
    ("negative step", "ok", {"metrics": [{"key": "a", "step": -1, "value": 1}]}, False, 400, "metrics[0].step: must be a non-negative"),
    ("float step", "ok", {"metrics": [{"key": "a", "step": 1.5, "value": 1}]}, False, 400, "metrics[0].step"),
    ("key over 200 chars", "ok", {"metrics": [{"key": LONG_KEY, "step": 1, "value": 1}]}, False, 400, "longer than 200"),
    ("empty key", "ok", {"metrics": [{"key": "", "step": 1, "value": 1}]}, False, 400, "metrics[0].key"),
    ("bad one late in the batch", "ok", {"metrics": [{"key": "a", "step": i, "value": 1} for i in range(50)] + [{"key": "a", "step": 51, "value": None}]}, False, 400, "metrics[50].value"),
    ("sample missing completion", "ok", {"metrics": [{"key": "a", "step": 1, "value": 1}], "samples": [{"step": 1, "prompt": "p", "rewards": {}}]}, False, 400, "samples[0]: missing field 'completion'"),
    ("sample reward not a number", "ok", {"samples": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {"accuracy": "yes"}}]}, False, 400, "samples[0].rewards['accuracy']"),
    ("sample negative step", "ok", {"samples": [{"step": -2, "prompt": "p", "completion": "c", "rewards": {}}]}, False, 400, "samples[0].step"),
    # PostgreSQL cannot store NUL, and group/index/length are 32-bit columns: these answered 500,
    # which the client retries forever (issue 15: one bad sample blocked a run for good).
    ("NUL in a metric key", "ok", {"metrics": [{"key": "a\x00b", "step": 1, "value": 1}]}, False, 400, "metrics[0].key: must not contain NUL"),
    ("NUL in a reward name", "ok", {"samples": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {"acc\x00": 1}}]}, False, 400, "samples[0].rewards"),
    ("NUL in a prompt id", "ok", {"samples": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {}, "prompt_id": "q\x00"}]}, False, 400, "samples[0].prompt_id: must not contain NUL"),
    ("group beyond int32", "ok", {"samples": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {}, "group": 2**31}]}, False, 400, "samples[0].group: must be at most 2147483647"),
    ("index beyond int32", "ok", {"samples": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {}, "group": 0, "index": 2**40}]}, False, 400, "samples[0].index"),
    ("length beyond int32", "ok", {"samples": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {}, "length": 2**33}]}, False, 400, "samples[0].length"),
    ("step beyond bigint", "ok", {"metrics": [{"key": "a", "step": 2**63, "value": 1}]}, False, 400, "metrics[0].step"),
    # Over the default R1LAB_INGEST_MAX_BYTES (16 MiB); built when the row runs, not at import.
    ("body over the ingest limit", "ok", lambda: b"[" + b" " * (16 * 1024 * 1024) + b"]", True, 413, "the limit is 16777216"),
]


@pytest.mark.parametrize("case,token_kind,body,raw,status,fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_rejected_and_nothing_is_stored(client, run_and_token, make_user, case, token_kind, body, raw, status, fragment):
    run, token = run_and_token
    tok = {"ok": token, None: None, "garbage": "r1r_nope", "other": _other_run_token(),
           "personal": _personal_token(make_user) if token_kind == "personal" else None}[token_kind]
    r = post(client, log_url(run), body() if callable(body) else body, tok, raw=raw)
    assert r.status_code == status, (case, r.content)
    assert "error" in r.json()
    if fragment:
        assert fragment in r.json()["error"], r.json()
    assert Point.objects.count() == 0
    assert Sample.objects.count() == 0
    assert Series.objects.filter(run=run).count() == 0
    run.refresh_from_db()
    assert run.last_seen_at is None


@override_settings(R1LAB_INGEST_MAX_BYTES=1000)
def test_body_over_the_limit_is_413(client, run_and_token):
    run, token = run_and_token
    body = {"metrics": [{"key": "a", "step": i, "value": 1.0} for i in range(100)]}
    r = post(client, log_url(run), body, token)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]
    assert Point.objects.count() == 0


OVERSIZED = [
    # (case, Content-Length sent?) — through the whole ASGI application (r1lab/asgi.py), whose
    # body limit refuses before the body is read (issue 15; before, all of it was buffered first).
    ("declared length over the limit", True),
    ("chunked, no length, over the limit", False),
]


@pytest.mark.parametrize("case,declared", OVERSIZED, ids=[c[0] for c in OVERSIZED])
def test_oversized_body_is_refused_before_it_is_read_and_nothing_is_stored(run_and_token, settings, case, declared):
    settings.R1LAB_INGEST_MAX_BYTES = 32 * 1024
    run, token = run_and_token
    body = json.dumps({"metrics": [{"key": "reward", "step": i, "value": 0.5} for i in range(4000)]}).encode()
    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    answer = async_to_sync(asgi_request)(log_url(run), chunks, headers=headers)
    assert answer.status == 413, (case, answer.body)
    assert "the limit is 32768" in json.loads(answer.body)["error"]
    assert answer.consumed <= (0 if declared else 32 * 1024 + 8192) < len(body)
    assert Point.objects.count() == 0 and Series.objects.filter(run=run).count() == 0


def test_get_is_405(client, run_and_token):
    run, token = run_and_token
    assert client.get(log_url(run), HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_create_external_run_with_a_personal_token(client, make_user):
    raw = api_token_create(user=make_user("researcher"))[1]
    r = post(client, "/api/v1/runs", {"name": "my trl run", "project": "zero", "config": {"lr": 1e-6}}, raw)
    assert r.status_code == 201, r.content
    data = r.json()
    run = Run.objects.get(pk=data["id"])
    assert run.external and run.project == "zero" and run.config == {"lr": 1e-6}
    assert post(client, log_url(run), good_body(), data["token"]).status_code == 200


def test_create_run_needs_a_researcher(client, make_user):
    raw = api_token_create(user=make_user("viewer"))[1]
    assert post(client, "/api/v1/runs", {"name": "x"}, raw).status_code == 403
    assert post(client, "/api/v1/runs", {"name": "x"}, "r1p_bogus").status_code == 401
    raw = api_token_create(user=make_user("researcher"))[1]
    assert post(client, "/api/v1/runs", {"config": {}}, raw).status_code == 400
    assert Run.objects.count() == 0


def test_finish(client, run_and_token):
    run, token = run_and_token
    assert post(client, f"/api/v1/runs/{run.pk}/finish", {"status": "exploded"}, token).status_code == 400
    r = post(client, f"/api/v1/runs/{run.pk}/finish", {"status": "succeeded"}, token)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.finished_at is not None


def test_read_metrics_with_a_personal_token(client, run_and_token, make_user):
    run, token = run_and_token
    post(client, log_url(run), {"metrics": [{"key": "reward", "step": i, "value": i / 10} for i in range(10)]}, token)
    raw = api_token_create(user=make_user("viewer"))[1]
    r = client.get(f"/api/v1/runs/{run.pk}/metrics?keys=reward&min_step=2&max_step=4", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert r.status_code == 200
    s = r.json()["series"]["reward"]
    assert s["x"] == [2, 3, 4] and s["y"] == [0.2, 0.3, 0.4] and s["total"] == 3 and not s["downsampled"]
    assert client.get(f"/api/v1/runs/{run.pk}/metrics?max_points=x", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 400


def test_openapi_schema_lists_the_endpoints(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/runs", "/runs/{id}/log", "/runs/{id}/finish", "/runs/{id}/metrics"} <= set(paths)


def test_model_text_with_nul_is_stored_faithfully_escaped(client, run_and_token):
    """Model output is untrusted and may hold NUL: stored (as ␀, the fields named), never a 500."""
    run, token = run_and_token
    body = {"samples": [{"step": 1, "prompt": "p\x00", "completion": "<think>a\x00b</think><answer>2</answer>",
                         "rewards": {"accuracy": 1.0}, "group": 0, "index": 0, "meta": {"raw\x00": ["x\x00"]}}]}
    r = post(client, log_url(run), body, token)
    assert r.status_code == 200, r.content
    s = Sample.objects.get(run=run)
    assert s.prompt == "p\u2400" and s.completion == "<think>a\u2400b</think><answer>2</answer>"
    assert s.think == "a\u2400b" and s.answer == "2" and s.correct is True
    assert s.extra == {"meta": {"raw\u2400": ["x\u2400"]}, "escaped_nul": ["prompt", "completion", "extra"]}


CREATE_BAD = [
    ({"name": "a\x00"}, "name: must not contain NUL"),
    ({"name": "a", "project": "p\x00"}, "project: must not contain NUL"),
    ({"name": "a", "config": {"lr": ["x\x00"]}}, "config.lr[0]: must not contain NUL"),
    ({"name": "a", "config": {"k\x00": 1}}, "config (a key)"),
    ({"name": "a", "config": [1]}, "config: must be a JSON object"),
]


@pytest.mark.parametrize("body,fragment", CREATE_BAD, ids=[c[1] for c in CREATE_BAD])
def test_create_run_bad_input_is_400(client, make_user, body, fragment):
    raw = api_token_create(user=make_user("researcher"))[1]
    r = post(client, "/api/v1/runs", body, raw)
    assert r.status_code == 400, r.content
    assert fragment in r.json()["error"]
    assert Run.objects.count() == 0


@pytest.mark.parametrize("query", ["min_step=1e400", "max_step=-1e400", "min_step=99999999999999999999999",
                                   "max_step=inf", "min_step=1e30", "min_step=nan", "keys=%00"])
def test_metrics_window_bounds_never_500(client, run_and_token, make_user, query):
    run, token = run_and_token
    post(client, log_url(run), {"metrics": [{"key": "reward", "step": i, "value": i} for i in range(5)]}, token)
    raw = api_token_create(user=make_user("viewer"))[1]
    r = client.get(f"/api/v1/runs/{run.pk}/metrics?{query}", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert r.status_code in (200, 400), (query, r.status_code)
    assert "error" in r.json() if r.status_code == 400 else "series" in r.json()


def test_a_zoom_left_of_zero_is_clamped(client, run_and_token, make_user):
    run, token = run_and_token
    post(client, log_url(run), {"metrics": [{"key": "reward", "step": i, "value": i} for i in range(5)]}, token)
    raw = api_token_create(user=make_user("viewer"))[1]
    r = client.get(f"/api/v1/runs/{run.pk}/metrics?min_step=-3.5&max_step=2", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert r.json()["series"]["reward"]["x"] == [0, 1, 2]


@override_settings(R1LAB_MAX_KEYS_PER_RUN=50)
def test_distinct_keys_per_run_are_capped_with_a_clear_400(client, run_and_token):
    """One batch once created ~70k keys and every run page then tried to draw them all."""
    run, token = run_and_token
    body = {"metrics": [{"key": f"k{i}", "step": 1, "value": 1.0} for i in range(40)]}
    assert post(client, log_url(run), body, token).status_code == 200
    body = {"metrics": [{"key": f"k{i}", "step": 2, "value": 1.0} for i in range(30, 60)]}  # 20 new: 60 > 50
    r = post(client, log_url(run), body, token)
    assert r.status_code == 400 and "at most 50 distinct metric keys" in r.json()["error"]
    assert Series.objects.filter(run=run).count() == 40 and not Point.objects.filter(step=2).exists()
    body = {"metrics": [{"key": f"k{i}", "step": 2, "value": 1.0} for i in range(30, 50)]}  # 10 new: 50
    assert post(client, log_url(run), body, token).status_code == 200
    assert Series.objects.filter(run=run).count() == 50
