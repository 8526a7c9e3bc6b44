"""The MLflow endpoints through Django's test client: who may do what, and every bad request a 4xx
in MLflow's error format that stores nothing (never a 500). The real `mlflow` client drives them
in test_mlflow_client.py; here the bodies are hand-made, to send what no client would."""
import json

import pytest
from django.test import override_settings

from r1lab.accounts.services import api_token_create
from r1lab.tracking import mlflow_protocol as proto
from r1lab.tracking.models import MlflowExperiment, Point, Run, Series
from r1lab.tracking.panels import panels_for_keys
from r1lab.tracking.services import tracked_run_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
API = "/api/2.0/mlflow/"


def call(client, method, endpoint, body=None, token=None, raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    if method == "GET":
        return client.get(API + endpoint, body or {}, **headers)
    data = raw if raw is not None else json.dumps(body or {})
    return client.post(API + endpoint, data=data, content_type="application/json", **headers)


@pytest.fixture
def researcher():
    user = UserFactory(role="researcher")
    return user, api_token_create(user=user)[1]


@pytest.fixture
def mlrun(client, researcher):
    """A run created through the protocol, with a param, a tag and two points."""
    user, token = researcher
    exp = call(client, "POST", "experiments/create", {"name": "bad-input"}, token).json()["experiment_id"]
    run = call(client, "POST", "runs/create", {"experiment_id": exp, "run_name": "target"}, token).json()["run"]
    rid = run["info"]["run_id"]
    r = call(client, "POST", "runs/log-batch", {
        "run_id": rid, "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "stage", "value": "grpo"}],
        "metrics": [{"key": "reward", "value": 0.5, "timestamp": 1700000000000, "step": 0},
                    {"key": "reward", "value": 0.6, "timestamp": 1700000001000, "step": 1}]}, token)
    assert r.status_code == 200, r.content
    return Run.objects.get(pk=int(rid)), token


def snapshot(run: Run):
    run.refresh_from_db()
    return (Run.objects.count(), Series.objects.count(), Point.objects.count(), MlflowExperiment.objects.count(),
            run.name, run.status, run.config, run.tags, run.notes)


def test_a_batch_is_stored_with_mlflow_semantics(client, mlrun):
    run, token = mlrun
    rid = str(run.pk)
    assert run.external and run.project == "bad-input" and run.name == "target"
    assert run.config == {"lr": "0.1"} and run.tags == {"stage": "grpo"}
    points = list(Point.objects.filter(series__run=run).order_by("step").values_list("step", "value", "ts"))
    assert points == [(0, 0.5, 1700000000.0), (1, 0.6, 1700000001.0)]
    # a value already stored at (key, step) is kept: the first wins, as retries must not duplicate
    call(client, "POST", "runs/log-metric", {"run_id": rid, "key": "reward", "value": 9.0, "step": 1}, token)
    # step defaults to 0, timestamp to now; a value that is not finite is skipped, the rest stored
    r = call(client, "POST", "runs/log-batch", {"run_id": rid, "metrics": [
        {"key": "kl", "value": 0.01}, {"key": "loss", "value": "NaN", "step": 3}, {"key": "loss", "value": 2, "step": 4}]},
        token)
    assert r.status_code == 200 and r.json() == {}
    assert Point.objects.get(series__run=run, series__key="reward", step=1).value == 0.6
    assert Point.objects.get(series__run=run, series__key="kl").step == 0
    assert list(Point.objects.filter(series__run=run, series__key="loss").values_list("step", "value")) == [(4, 2.0)]
    # the same param again is a retry; mlflow.runName renames, mlflow.note.content is the notes
    call(client, "POST", "runs/log-parameter", {"run_id": rid, "key": "lr", "value": "0.1"}, token)
    call(client, "POST", "runs/set-tag", {"run_id": rid, "key": "mlflow.runName", "value": "renamed"}, token)
    call(client, "POST", "runs/set-tag", {"run_id": rid, "key": "mlflow.note.content", "value": "a note"}, token)
    run.refresh_from_db()
    assert (run.name, run.notes, run.config) == ("renamed", "a note", {"lr": "0.1"})
    got = call(client, "GET", "runs/get", {"run_id": rid}, token).json()["run"]
    assert got["info"]["run_name"] == "renamed" and got["info"]["status"] == "RUNNING"
    assert {"key": "mlflow.runName", "value": "renamed"} in got["data"]["tags"]
    assert {m["key"]: m["value"] for m in got["data"]["metrics"]} == {"reward": 0.6, "kl": 0.01, "loss": 2.0}
    hist = call(client, "GET", "metrics/get-history", {"run_id": rid, "metric_key": "reward", "max_results": "1"}, token).json()
    assert hist["metrics"] == [{"key": "reward", "value": 0.5, "timestamp": 1700000000000, "step": 0}]
    nxt = call(client, "GET", "metrics/get-history",
               {"run_id": rid, "metric_key": "reward", "page_token": hist["next_page_token"]}, token).json()
    assert [m["step"] for m in nxt["metrics"]] == [1] and "next_page_token" not in nxt
    # the history is built as JSON by PostgreSQL: every double comes back bit for bit
    values = [0.1, 1e-06, 1 / 3, 1e300, -0.0, 123456789.12345679, 5e-324, -2.5e-08, 7.0]
    call(client, "POST", "runs/log-batch", {"run_id": rid, "metrics": [
        {"key": "exact", "value": v, "timestamp": 1700000000123 + i, "step": i} for i, v in enumerate(values)]}, token)
    got = call(client, "GET", "metrics/get-history", {"run_id": rid, "metric_key": "exact"}, token).json()["metrics"]
    assert [(m["value"], m["timestamp"], m["step"]) for m in got] == [
        (v, 1700000000123 + i, i) for i, v in enumerate(values)]
    for status, r1lab in (("KILLED", "cancelled"), ("RUNNING", "running"), ("FINISHED", "succeeded")):
        info = call(client, "POST", "runs/update", {"run_id": rid, "status": status}, token).json()["run_info"]
        run.refresh_from_db()
        assert info["status"] == status and run.status == r1lab


def test_experiment_ids_are_stable_per_project(client, researcher):
    _, token = researcher
    tracked_run_create(name="from-a-pipeline", project="legacy")  # a project no MLflow client made
    first = call(client, "GET", "experiments/get-by-name", {"experiment_name": "legacy"}, token).json()["experiment"]
    again = call(client, "GET", "experiments/get-by-name", {"experiment_name": "legacy"}, token).json()["experiment"]
    by_id = call(client, "GET", "experiments/get", {"experiment_id": first["experiment_id"]}, token).json()["experiment"]
    assert first["experiment_id"] == again["experiment_id"] == by_id["experiment_id"] and by_id["name"] == "legacy"
    created = call(client, "POST", "experiments/create", {"name": "fresh"}, token).json()["experiment_id"]
    assert call(client, "GET", "experiments/get-by-name", {"experiment_name": "fresh"}, token).json()["experiment"][
        "experiment_id"] == created
    # "0" is MLflow's Default experiment: r1lab's project "default"
    assert call(client, "GET", "experiments/get-by-name", {"experiment_name": "Default"}, token).json()[
        "experiment"]["experiment_id"] == "0"
    run = call(client, "POST", "runs/create", {"experiment_id": "0"}, token).json()["run"]
    assert Run.objects.get(pk=int(run["info"]["run_id"])).project == "default"
    assert run["info"]["run_name"].startswith("mlflow-")


def test_roles_and_tokens(client, mlrun):
    run, _ = mlrun
    viewer = api_token_create(user=UserFactory(role="viewer"))[1]
    annotator = api_token_create(user=UserFactory(role="annotator"))[1]
    nobody = api_token_create(user=UserFactory())[1]
    rid = str(run.pk)
    run_token = tracked_run_create(name="t")[1]
    before = snapshot(run)
    write = {"run_id": rid, "metrics": [{"key": "x", "value": 1.0, "step": 9}]}
    cases = [
        (None, "POST", "runs/log-batch", write, 401, "UNAUTHENTICATED", "MLFLOW_TRACKING_TOKEN"),
        ("not-a-token", "POST", "runs/log-batch", write, 401, "UNAUTHENTICATED", "invalid"),
        (run_token, "POST", "runs/log-batch", write, 401, "UNAUTHENTICATED", "run token"),
        (viewer, "POST", "runs/log-batch", write, 403, "PERMISSION_DENIED", "may not create"),
        (annotator, "POST", "runs/create", {"experiment_id": "0"}, 403, "PERMISSION_DENIED", "may not create"),
        (nobody, "GET", "runs/get", {"run_id": rid}, 403, "PERMISSION_DENIED", "may not view"),
        (None, "GET", "runs/get", {"run_id": rid}, 401, "UNAUTHENTICATED", "MLFLOW_TRACKING_TOKEN"),
    ]
    for token, method, endpoint, body, status, code, text in cases:
        r = call(client, method, endpoint, body, token)
        assert (r.status_code, r.json()["error_code"]) == (status, code), (endpoint, token, r.content)
        assert text in r.json()["message"]
    assert snapshot(run) == before
    # viewers read
    assert call(client, "GET", "runs/get", {"run_id": rid}, viewer).status_code == 200
    assert call(client, "POST", "runs/search", {"experiment_ids": ["0"]}, viewer).status_code == 200
    # a pipeline stage's run is its trainer's to write, not an MLflow client's
    stage_run, _ = tracked_run_create(name="stage", project="bad-input")
    r = call(client, "POST", "runs/log-batch", {**write, "run_id": str(stage_run.pk)}, mlrun[1])
    assert r.status_code == 403 and "pipeline stage" in r.json()["message"]
    assert not Series.objects.filter(run=stage_run).exists()


BIG = "x" * 201
NUL_NAME = "re\x00ward"


def _metric(**kw):
    return {"key": "reward", "value": 1.0, "timestamp": 1700000000000, "step": 5, **kw}


def _batch(rid, **kw):
    return {"run_id": rid, **kw}


# (endpoint, method, body (run id filled in for "RID"), raw body, status, error_code, message fragment)
BAD = [
    ("runs/log-batch", "POST", {}, b"{", 400, "INVALID_PARAMETER_VALUE", "not valid JSON"),
    ("runs/log-batch", "POST", {}, b"[1, 2]", 400, "INVALID_PARAMETER_VALUE", "JSON object"),
    ("runs/log-batch", "POST", {}, b'{"run_id": "RID", "metrics": [{"key": "a", "value": NaN, "step": 0}]}', 400,
     "INVALID_PARAMETER_VALUE", "not valid JSON"),
    ("runs/log-batch", "POST", {}, b'{"run_id": "RID", "metrics": [{"key": "a", "value": 1e999, "step": 0}]}', 400,
     "INVALID_PARAMETER_VALUE", "not valid JSON"),
    ("runs/log-batch", "POST", {"metrics": {"reward": 1}}, None, 400, "INVALID_PARAMETER_VALUE", "metrics: must be a list"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step=s) for s in range(1001)]}, None, 400,
     "INVALID_PARAMETER_VALUE", "at most 1000 metrics"),
    ("runs/log-batch", "POST", {"params": [{"key": f"p{i}", "value": "1"} for i in range(101)]}, None, 400,
     "INVALID_PARAMETER_VALUE", "at most 100 params"),
    ("runs/log-batch", "POST", {"tags": [{"key": f"t{i}", "value": "1"} for i in range(101)]}, None, 400,
     "INVALID_PARAMETER_VALUE", "at most 100 tags"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step=s) for s in range(950)],
                                "params": [{"key": f"p{i}", "value": "1"} for i in range(60)]}, None, 400,
     "INVALID_PARAMETER_VALUE", "at most 1000 metrics, params, and tags"),
    ("runs/log-batch", "POST", {"metrics": [_metric(), _metric(key=NUL_NAME)]}, None, 400, "INVALID_PARAMETER_VALUE",
     "metrics[1].key: must not contain NUL"),
    ("runs/log-batch", "POST", {"metrics": [_metric(key="")]}, None, 400, "INVALID_PARAMETER_VALUE", "non-empty"),
    ("runs/log-batch", "POST", {"metrics": [_metric(key=7)]}, None, 400, "INVALID_PARAMETER_VALUE", "non-empty string"),
    ("runs/log-batch", "POST", {"metrics": [_metric(key=["reward"])]}, None, 400, "INVALID_PARAMETER_VALUE", "non-empty"),
    ("runs/log-batch", "POST", {"params": [{"key": ["p"], "value": "1"}]}, None, 400, "INVALID_PARAMETER_VALUE", "non-empty"),
    ("runs/log-batch", "POST", {"tags": [{"key": {"k": 1}, "value": "1"}]}, None, 400, "INVALID_PARAMETER_VALUE", "non-empty"),
    ("runs/log-batch", "POST", {"metrics": [["reward", 1.0, 0]]}, None, 400, "INVALID_PARAMETER_VALUE", "must be an object"),
    ("runs/log-batch", "POST", {"metrics": [_metric(key=BIG)]}, None, 400, "INVALID_PARAMETER_VALUE", "200 characters"),
    ("runs/log-batch", "POST", {"metrics": [_metric(value="abc")]}, None, 400, "INVALID_PARAMETER_VALUE", "metrics[0].value"),
    ("runs/log-batch", "POST", {"metrics": [_metric(value="nan")]}, None, 400, "INVALID_PARAMETER_VALUE", "a number"),
    ("runs/log-batch", "POST", {"metrics": [_metric(value=True)]}, None, 400, "INVALID_PARAMETER_VALUE", "a number"),
    ("runs/log-batch", "POST", {"metrics": [_metric(value=[1.0])]}, None, 400, "INVALID_PARAMETER_VALUE", "a number"),
    ("runs/log-batch", "POST", {"metrics": [_metric(value=None)]}, None, 400, "INVALID_PARAMETER_VALUE", "Missing value"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step=-1)]}, None, 400, "INVALID_PARAMETER_VALUE", "metrics[0].step"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step=2**63)]}, None, 400, "INVALID_PARAMETER_VALUE", "metrics[0].step"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step=1.5)]}, None, 400, "INVALID_PARAMETER_VALUE", "integer"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step=1e20)]}, None, 400, "INVALID_PARAMETER_VALUE", "integer"),
    ("runs/log-batch", "POST", {"metrics": [_metric(step="NaN")]}, None, 400, "INVALID_PARAMETER_VALUE", "integer"),
    ("runs/log-batch", "POST", {"metrics": [_metric(timestamp=-5)]}, None, 400, "INVALID_PARAMETER_VALUE", "timestamp"),
    ("runs/log-batch", "POST", {"metrics": [_metric(timestamp=2**64)]}, None, 400, "INVALID_PARAMETER_VALUE", "timestamp"),
    ("runs/log-batch", "POST", {"metrics": [_metric(timestamp="later")]}, None, 400, "INVALID_PARAMETER_VALUE", "timestamp"),
    ("runs/log-batch", "POST", {"metrics": [_metric()], "params": [{"key": "p", "value": "a\x00b"}]}, None, 400,
     "INVALID_PARAMETER_VALUE", "params[0].value: must not contain NUL"),
    ("runs/log-batch", "POST", {"metrics": [_metric()], "params": [{"key": "p", "value": "v" * 6001}]}, None, 400,
     "INVALID_PARAMETER_VALUE", "6000"),
    ("runs/log-batch", "POST", {"params": [{"key": "p", "value": 3}]}, None, 400, "INVALID_PARAMETER_VALUE", "a string"),
    ("runs/log-batch", "POST", {"params": [{"key": "p\x00", "value": "1"}]}, None, 400, "INVALID_PARAMETER_VALUE", "NUL"),
    ("runs/log-batch", "POST", {"params": [{"key": "p", "value": "1"}, {"key": "p", "value": "1"}]}, None, 400,
     "INVALID_PARAMETER_VALUE", "Duplicate parameter keys"),
    ("runs/log-batch", "POST", {"metrics": [_metric()], "params": [{"key": "lr", "value": "0.2"}]}, None, 400,
     "INVALID_PARAMETER_VALUE", "Changing param values is not allowed"),
    ("runs/log-batch", "POST", {"tags": [{"key": "t", "value": "a\x00"}]}, None, 400, "INVALID_PARAMETER_VALUE", "NUL"),
    ("runs/log-batch", "POST", {"tags": [{"key": "k" * 251, "value": "a"}]}, None, 400, "INVALID_PARAMETER_VALUE", "250"),
    ("runs/log-batch", "POST", {"tags": [{"key": "mlflow.runName", "value": BIG}]}, None, 400, "INVALID_PARAMETER_VALUE",
     "200"),
    ("runs/log-batch", "POST", {"tags": [{"key": "t", "value": {"a": 1}}]}, None, 400, "INVALID_PARAMETER_VALUE", "a string"),
    ("runs/log-batch", "POST", {"run_id": None, "metrics": [_metric()]}, None, 400, "INVALID_PARAMETER_VALUE", "run_id"),
    ("runs/log-batch", "POST", {"run_id": "abc", "metrics": [_metric()]}, None, 404, "RESOURCE_DOES_NOT_EXIST", "abc"),
    ("runs/log-batch", "POST", {"run_id": "9" * 30, "metrics": [_metric()]}, None, 404, "RESOURCE_DOES_NOT_EXIST", "not found"),
    ("runs/log-batch", "POST", {"run_id": "987654321", "metrics": [_metric()]}, None, 404, "RESOURCE_DOES_NOT_EXIST",
     "not found"),
    ("runs/log-batch", "POST", {"run_id": "999999999999999999", "metrics": [_metric()]}, None, 404,
     "RESOURCE_DOES_NOT_EXIST", "not found"),
    ("runs/get", "GET", {"run_id": "99999999999"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "not found"),
    ("experiments/get", "GET", {"experiment_id": "999999999999999999"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "exists"),
    ("runs/create", "POST", {"experiment_id": "999999999999999999"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "exists"),
    ("runs/log-batch", "POST", {"run_id": ["RID"], "metrics": [_metric()]}, None, 404, "RESOURCE_DOES_NOT_EXIST", "not found"),
    ("runs/log-metric", "POST", {"key": "reward", "value": "abc", "step": 1}, None, 400, "INVALID_PARAMETER_VALUE", "value"),
    ("runs/log-metric", "POST", {"value": 1.0}, None, 400, "INVALID_PARAMETER_VALUE", "key"),
    ("runs/log-parameter", "POST", {"value": "1"}, None, 400, "INVALID_PARAMETER_VALUE", "key"),
    ("runs/log-parameter", "POST", {"key": "lr", "value": "0.3"}, None, 400, "INVALID_PARAMETER_VALUE", "Changing param"),
    ("runs/set-tag", "POST", {"key": None, "value": "x"}, None, 400, "INVALID_PARAMETER_VALUE", "key"),
    ("runs/set-tag", "POST", {"key": "t", "value": 5}, None, 400, "INVALID_PARAMETER_VALUE", "a string"),
    ("runs/create", "POST", {"experiment_id": "abc"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "abc"),
    ("runs/create", "POST", {"experiment_id": "987654321"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "987654321"),
    ("runs/create", "POST", {"experiment_id": "0", "run_name": "a\x00"}, None, 400, "INVALID_PARAMETER_VALUE", "NUL"),
    ("runs/create", "POST", {"experiment_id": "0", "run_name": BIG}, None, 400, "INVALID_PARAMETER_VALUE", "200"),
    ("runs/create", "POST", {"experiment_id": "0", "tags": {"a": "b"}}, None, 400, "INVALID_PARAMETER_VALUE", "tags"),
    ("runs/create", "POST", {"experiment_id": "0", "start_time": "soon"}, None, 400, "INVALID_PARAMETER_VALUE", "start_time"),
    ("runs/update", "POST", {"status": "DONE"}, None, 400, "INVALID_PARAMETER_VALUE", "status"),
    ("runs/update", "POST", {"status": ["FINISHED"]}, None, 400, "INVALID_PARAMETER_VALUE", "status"),
    ("runs/update", "POST", {"status": 9}, None, 400, "INVALID_PARAMETER_VALUE", "status"),
    ("runs/update", "POST", {"run_name": "x\x00"}, None, 400, "INVALID_PARAMETER_VALUE", "NUL"),
    ("runs/update", "POST", {"end_time": -1}, None, 400, "INVALID_PARAMETER_VALUE", "end_time"),
    ("runs/search", "POST", {"experiment_ids": "0"}, None, 400, "INVALID_PARAMETER_VALUE", "experiment_ids"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "metrics.reward >"}, None, 400, "INVALID_PARAMETER_VALUE",
     "no value"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "params.lr = 0.1"}, None, 400, "INVALID_PARAMETER_VALUE",
     "quote"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "params.a = 'x' OR params.b = 'y'"}, None, 400,
     "INVALID_PARAMETER_VALUE", "OR"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "params.a = 'x\x00'"}, None, 400, "INVALID_PARAMETER_VALUE",
     "NUL"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "metrics.reward > 1e999"}, None, 400,
     "INVALID_PARAMETER_VALUE", "finite"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "attributes.status = 'DONE'"}, None, 400,
     "INVALID_PARAMETER_VALUE", "status"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": "foo.bar = 'x'"}, None, 400, "INVALID_PARAMETER_VALUE",
     "entity"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "order_by": ["nowhere.x"]}, None, 400, "INVALID_PARAMETER_VALUE",
     "order_by"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "max_results": 0}, None, 400, "INVALID_PARAMETER_VALUE", "max_results"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "max_results": 10**6}, None, 400, "INVALID_PARAMETER_VALUE",
     "max_results"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "page_token": "garbage"}, None, 400, "INVALID_PARAMETER_VALUE",
     "page_token"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "run_view_type": []}, None, 400, "INVALID_PARAMETER_VALUE",
     "run_view_type"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "filter": ["params.a = 'x'"]}, None, 400, "INVALID_PARAMETER_VALUE",
     "filter: must be a string"),
    ("runs/search", "POST", {"experiment_ids": ["0"], "order_by": [{"x": 1}]}, None, 400, "INVALID_PARAMETER_VALUE",
     "order_by[0]"),
    ("experiments/create", "POST", {"name": ""}, None, 400, "INVALID_PARAMETER_VALUE", "name"),
    ("experiments/create", "POST", {"name": "   "}, None, 400, "INVALID_PARAMETER_VALUE", "experiment name"),
    ("experiments/create", "POST", {"name": "a\x00"}, None, 400, "INVALID_PARAMETER_VALUE", "NUL"),
    ("experiments/create", "POST", {"name": "e" * 101}, None, 400, "INVALID_PARAMETER_VALUE", "100"),
    ("experiments/create", "POST", {"name": 12}, None, 400, "INVALID_PARAMETER_VALUE", "a string"),
    ("experiments/create", "POST", {"name": "bad-input"}, None, 400, "RESOURCE_ALREADY_EXISTS", "already exists"),
    ("experiments/create", "POST", {"name": "Default"}, None, 400, "RESOURCE_ALREADY_EXISTS", "already exists"),
    ("experiments/get", "GET", {"experiment_id": "abc"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "abc"),
    ("experiments/get", "GET", {"experiment_id": "987654321"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "987654321"),
    ("experiments/get", "GET", {}, None, 400, "INVALID_PARAMETER_VALUE", "experiment_id"),
    ("experiments/get-by-name", "GET", {}, None, 400, "INVALID_PARAMETER_VALUE", "experiment_name"),
    ("experiments/get-by-name", "GET", {"experiment_name": "a\x00b"}, None, 400, "INVALID_PARAMETER_VALUE", "NUL"),
    ("experiments/get-by-name", "GET", {"experiment_name": "nope"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "nope"),
    ("metrics/get-history", "GET", {}, None, 400, "INVALID_PARAMETER_VALUE", "metric_key"),
    ("metrics/get-history", "GET", {"metric_key": "reward", "max_results": "abc"}, None, 400, "INVALID_PARAMETER_VALUE",
     "max_results"),
    ("metrics/get-history", "GET", {"metric_key": "reward", "page_token": "@@"}, None, 400, "INVALID_PARAMETER_VALUE",
     "page_token"),
    ("runs/get", "GET", {"run_id": "987654321"}, None, 404, "RESOURCE_DOES_NOT_EXIST", "not found"),
    ("runs/log-batch", "GET", {}, None, 405, "BAD_REQUEST", "POST only"),
    ("runs/get", "POST", {}, None, 405, "BAD_REQUEST", "GET only"),
    ("runs/delete", "POST", {}, None, 404, "ENDPOINT_NOT_FOUND", "does not serve"),
    ("artifacts/list", "GET", {"run_id": "RID"}, None, 501, "NOT_IMPLEMENTED", "does not store artifacts"),
]


RUN_ENDPOINTS = {"runs/log-batch", "runs/log-metric", "runs/log-parameter", "runs/set-tag", "runs/update", "runs/get",
                 "metrics/get-history"}


def test_bad_requests_are_refused_whole(client, mlrun):
    """One fixture for the whole table (a user and a run per case cost seconds); every case is
    checked and the failures listed together."""
    run, token = mlrun
    rid = str(run.pk)
    before = snapshot(run)
    failures = []
    for i, (endpoint, method, body, raw, status, code, text) in enumerate(BAD):
        if endpoint in RUN_ENDPOINTS and "run_id" not in body:
            body = {"run_id": "RID", **body}
        body = {k: (rid if v == "RID" else [rid] if v == ["RID"] else v) for k, v in body.items()}
        r = call(client, method, endpoint, body, token, raw=raw.replace(b"RID", rid.encode()) if raw else None)
        payload = r.json() if r.get("Content-Type") == "application/json" else {}
        if r.status_code != status or payload.get("error_code") != code or text not in payload.get("message", ""):
            failures.append((i, endpoint, r.status_code, r.content[:300]))
        elif snapshot(run) != before:
            failures.append((i, endpoint, "stored something", snapshot(run)))
    assert not failures, failures


@override_settings(R1LAB_MAX_KEYS_PER_RUN=3)
def test_key_limit_and_body_limit_refuse_the_whole_batch(client, mlrun):
    run, token = mlrun
    before = snapshot(run)
    r = call(client, "POST", "runs/log-batch", {"run_id": str(run.pk), "params": [{"key": "new", "value": "1"}],
                                                "metrics": [_metric(key=f"k{i}") for i in range(5)]}, token)
    assert r.status_code == 400 and "at most 3" in r.json()["message"]
    with override_settings(R1LAB_INGEST_MAX_BYTES=1000):
        r = call(client, "POST", "runs/log-batch", {"run_id": str(run.pk), "metrics": [_metric(step=s) for s in range(50)]},
                 token)
        assert r.status_code == 413 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert snapshot(run) == before


def test_search_filters_and_order(client, researcher):
    _, token = researcher
    exp = call(client, "POST", "experiments/create", {"name": "search"}, token).json()["experiment_id"]
    ids = []
    for i, (name, lr, reward) in enumerate([("a", "0.1", 0.2), ("b", "0.2", 0.9), ("c", "0.1", 0.5)]):
        rid = call(client, "POST", "runs/create", {"experiment_id": exp, "run_name": name}, token).json()["run"]["info"]["run_id"]
        call(client, "POST", "runs/log-batch", {"run_id": rid, "params": [{"key": "lr", "value": lr}],
                                                "tags": [{"key": "team", "value": "rl"}],
                                                "metrics": [{"key": "reward", "value": reward - 0.1, "step": 0},
                                                            {"key": "reward", "value": reward, "step": 1}]}, token)
        ids.append(rid)
    call(client, "POST", "runs/update", {"run_id": ids[1], "status": "FINISHED"}, token)

    def names(filter_="", order=None, **kw):
        body = {"experiment_ids": [exp], "filter": filter_, **kw}
        if order:
            body["order_by"] = order
        r = call(client, "POST", "runs/search", body, token)
        assert r.status_code == 200, r.content
        return [x["info"]["run_name"] for x in r.json().get("runs", [])], r.json().get("next_page_token")

    assert names(order=["attributes.start_time ASC"])[0] == ["a", "b", "c"]
    assert names(order=["start_time DESC"])[0] == ["c", "b", "a"]
    assert names()[0] == ["c", "b", "a"]  # MLflow's default: newest first
    assert names("params.lr = '0.1'", ["attributes.run_name"])[0] == ["a", "c"]
    assert names("params.lr != '0.1'")[0] == ["b"]
    assert names("attributes.status = 'FINISHED'")[0] == ["b"]
    assert names("attributes.status IN ('RUNNING', 'KILLED')", ["run_name DESC"])[0] == ["c", "a"]
    assert names("tags.mlflow.runName = 'c'")[0] == ["c"]
    assert names("attributes.run_name LIKE '%b%'")[0] == ["b"]
    assert names("tags.`team` = 'rl' AND metrics.reward > 0.4", ["metrics.reward DESC"])[0] == ["b", "c"]
    assert names("metrics.reward < 0.4")[0] == ["a"]
    assert names(f"attributes.run_id IN ('{ids[0]}', '{ids[2]}')", ["run_name"])[0] == ["a", "c"]
    first, token1 = names(order=["run_name"], max_results=2)
    rest, token2 = names(order=["run_name"], max_results=2, page_token=token1)
    assert (first, rest, token2) == (["a", "b"], ["c"], None)
    assert names(run_view_type="DELETED_ONLY")[0] == []
    assert names(experiment_ids=["987654"])[0] == []


def test_filter_strings_parse_as_mlflow_writes_them():
    c = proto.parse_filter("metrics.`eval/pass@1` >= 0.5 and tags.\"mlflow.runName\" ILIKE '%grpo%' "
                           "AND params.lr NOT IN ('1', '2') AND status != 'FAILED'")
    assert [(x.kind, x.key, x.op, x.value) for x in c] == [
        ("metrics", "eval/pass@1", ">=", 0.5), ("tags", "mlflow.runName", "ILIKE", "%grpo%"),
        ("params", "lr", "NOT IN", ["1", "2"]), ("attributes", "status", "!=", "FAILED")]
    assert proto.parse_order_by(["metrics.reward DESC", "attributes.start_time"]) == [
        ("metrics", "reward", True), ("attributes", "start_time", False)]


def test_verl_and_trl_metric_names_fill_the_grpo_panels():
    """verl's names (verl/trainer/ppo/metric_utils.py, its actor) and TRL's reward-function names
    land in the GRPO panels, not in "More metrics"."""
    keys = ["critic/score/mean", "critic/rewards/mean", "response_length/mean", "response_length/clip_ratio",
            "actor/entropy", "actor/kl_loss", "actor/pg_clipfrac", "actor/lr", "perf/throughput",
            "val-core/openai/gsm8k/reward/mean_at_1", "rewards/accuracy_reward/mean", "rewards/format_reward/mean"]
    panels = {p["id"]: p for p in panels_for_keys(keys)}
    where = {k: [pid for pid, p in panels.items() if any(k in t["keys"] for t in p["traces"])] for k in keys}
    assert where["critic/score/mean"] == ["reward"] and "length" in where["response_length/mean"]
    assert where["actor/entropy"] == ["entropy"] and where["actor/kl_loss"] == ["kl"] and where["actor/lr"] == ["lr"]
    assert where["actor/pg_clipfrac"] == ["clip"] and where["perf/throughput"] == ["throughput"]
    assert where["val-core/openai/gsm8k/reward/mean_at_1"] == ["eval"]
    assert "accuracy" in where["rewards/accuracy_reward/mean"] and "format" in where["rewards/format_reward/mean"]
    assert not [p for p in panels.values() if p.get("extra")]


ODD_VALUES = [None, True, 0, -1, 2**63, 1e308, -0.0, "", "x", "\x00", "NaN", "Infinity", "9" * 40, [], [1, "a"], {},
              {"key": "k"}, [{"key": None}], [{"key": "k", "value": []}], "'", "params.a = ", "attributes.status IN ()"]
FIELDS = {
    "runs/log-batch": ["run_id", "metrics", "params", "tags"],
    "runs/log-metric": ["run_id", "key", "value", "timestamp", "step"],
    "runs/log-parameter": ["run_id", "key", "value"],
    "runs/set-tag": ["run_id", "key", "value"],
    "runs/create": ["experiment_id", "run_name", "start_time", "tags", "user_id"],
    "runs/update": ["run_id", "status", "end_time", "run_name"],
    "runs/search": ["experiment_ids", "filter", "order_by", "max_results", "page_token", "run_view_type"],
    "experiments/create": ["name", "tags", "artifact_location"],
}


def test_odd_values_in_every_field_never_answer_500(client, mlrun):
    """Every field of every write and search endpoint set to values of every JSON type (seeded,
    ~600 requests): always an MLflow-shaped answer below 500."""
    import random

    run, token = mlrun
    rng = random.Random(14)
    for endpoint, fields in FIELDS.items():
        for _ in range(75):
            body = {f: rng.choice(ODD_VALUES) for f in fields if rng.random() < 0.7}
            if "run_id" in fields and rng.random() < 0.5:
                body["run_id"] = str(run.pk)
            r = call(client, "POST", endpoint, body, token)
            assert r.status_code < 500, (endpoint, body, r.content)
            if r.status_code >= 400:
                assert set(r.json()) == {"error_code", "message"}, (endpoint, body, r.content)
