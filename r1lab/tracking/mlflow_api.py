"""The MLflow tracking protocol (`/api/2.0/mlflow/…`), so that any trainer that logs to MLflow
(transformers' and TRL's `report_to="mlflow"`, verl's `trainer.logger=[…,'mlflow']`, plain
`mlflow.log_metrics`) logs into r1lab by pointing MLFLOW_TRACKING_URI here.

An MLflow experiment is an r1lab project, an MLflow run an r1lab run, params its config, metrics
its series. Authentication: a personal API token, which the client sends as
`Authorization: Bearer $MLFLOW_TRACKING_TOKEN`; roles that may view runs may read, roles that may
launch runs may write. Errors are MLflow's `{"error_code", "message"}` with its HTTP status, and
bad input changes nothing. Views are thin: authenticate, validate (mlflow_protocol), call a
service or a selector, answer.
"""
from __future__ import annotations

from functools import wraps

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from r1lab.accounts.permissions import can
from r1lab.accounts.selectors import api_token_user, bearer_token
from r1lab.tracking import mlflow_protocol as proto
from r1lab.tracking import mlflow_selectors as sel
from r1lab.tracking import mlflow_services as svc
from r1lab.tracking.mlflow_protocol import INVALID, NOT_FOUND, MlflowError
from r1lab.tracking.models import Run
from r1lab.tracking.services import RUN_TOKEN_PREFIX
from r1lab.tracking.store import SeriesLimitError

ARTIFACTS_MESSAGE = (
    "r1lab does not store artifacts (models, checkpoints, files): it tracks params, metrics and tags. "
    "Keep artifacts on your own storage, or log them to an MLflow server of your own")


def _json(data, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def error_response(exc: MlflowError) -> HttpResponse:
    return _json({"error_code": exc.code, "message": exc.message}, status=exc.status)


def _endpoint(method: str, *, write: bool = False):
    """An MLflow endpoint: the HTTP method it answers, the user (personal token), MLflow errors."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                if request.method != method:
                    raise MlflowError("BAD_REQUEST", f"{request.path} answers {method} only (got {request.method})", 405)
                user = _user(request, write=write)
                payload = proto.query_dict(request.GET) if method == "GET" else proto.parse_body(_body(request))
                return view(request, user, payload, *args, **kwargs)
            except MlflowError as exc:
                return error_response(exc)
            except SeriesLimitError as exc:
                return error_response(MlflowError(INVALID, str(exc)))

        # The action it checks, for tests/accounts/test_permissions.py (an API view: it answers
        # MLflow's 401/403 instead of a login redirect).
        wrapped.r1lab_action = "runs.launch" if write else "runs.view"
        return csrf_exempt(wrapped)

    return decorator


def _user(request, *, write: bool):
    raw = bearer_token(request)
    if not raw:
        raise MlflowError("UNAUTHENTICATED", "missing `Authorization: Bearer <token>` header: set MLFLOW_TRACKING_TOKEN "
                                             "to an r1lab personal API token")
    user = api_token_user(raw=raw)
    if user is None:
        if raw.startswith(RUN_TOKEN_PREFIX):
            raise MlflowError("UNAUTHENTICATED", "a run token cannot be used with the MLflow API: set "
                                                 "MLFLOW_TRACKING_TOKEN to a personal API token")
        raise MlflowError("UNAUTHENTICATED", "invalid or revoked personal API token (MLFLOW_TRACKING_TOKEN)")
    if not can(user, "runs.view"):
        raise MlflowError("PERMISSION_DENIED", "your role may not view runs")
    if write and not can(user, "runs.launch"):
        raise MlflowError("PERMISSION_DENIED", "your role may not create or log to runs (researchers may)")
    return user


def _body(request) -> bytes:
    limit = settings.R1LAB_INGEST_MAX_BYTES
    length = request.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        raise MlflowError(INVALID, f"body is {int(length)} bytes; the limit is {limit}", 413)
    try:
        body = request.body
    except RequestDataTooBig:
        raise MlflowError(INVALID, f"body is over the limit of {limit} bytes", 413) from None
    if len(body) > limit:
        raise MlflowError(INVALID, f"body is {len(body)} bytes; the limit is {limit}", 413)
    return body


def _run(user, payload: dict, *, write: bool = False) -> Run:
    rid = proto.run_id(payload)
    run = sel.run_for(user=user, run_id=rid, lean=write)
    if run is None:
        raise MlflowError(NOT_FOUND, f"Run with id={rid} not found")
    if write and not run.external:
        raise MlflowError("PERMISSION_DENIED", f"run {rid} belongs to a pipeline stage, whose trainer reports it; "
                                               "MLflow clients write to the runs they create")
    return run


def _runs_json(runs: list[Run]) -> list[dict]:
    ids = svc.mlflow_experiment_ids(projects={r.project for r in runs})
    return sel.run_payloads(runs=runs, experiment_ids=ids)


# --- experiments ----------------------------------------------------------------------------------------


@_endpoint("GET")
def experiment_get_by_name(request, user, payload):
    name = proto.experiment_name(payload, "experiment_name")
    project = sel.project_of_name(name)
    if not sel.project_exists(project=project):
        raise MlflowError(NOT_FOUND, f"Could not find experiment with name '{name}'")
    exp_id = svc.mlflow_experiment_ids(projects=[project])[project]
    return _json({"experiment": sel.experiment_payload(experiment_id=exp_id, project=project)})


@_endpoint("POST", write=True)
def experiment_create(request, user, payload):
    fields = proto.parse_experiment_create(payload)
    return _json({"experiment_id": str(svc.mlflow_experiment_create(**fields))})


@_endpoint("GET")
def experiment_get(request, user, payload):
    exp_id = proto.experiment_id(payload.get("experiment_id"))
    project = sel.project_of_experiment(experiment_id=exp_id)
    if project is None:
        raise MlflowError(NOT_FOUND, f"No Experiment with id={exp_id} exists")
    return _json({"experiment": sel.experiment_payload(experiment_id=exp_id, project=project)})


# --- runs ----------------------------------------------------------------------------------------------


@_endpoint("POST", write=True)
def run_create(request, user, payload):
    fields = proto.parse_run_create(payload)
    run = svc.mlflow_run_create(user=user, **fields)
    return _json({"run": _runs_json([sel.run_for(user=user, run_id=run.pk)])[0]})


@_endpoint("GET")
def run_get(request, user, payload):
    return _json({"run": _runs_json([_run(user, payload)])[0]})


@_endpoint("POST", write=True)
def run_update(request, user, payload):
    run = _run(user, payload, write=True)
    run = svc.mlflow_run_update(run=run, **proto.parse_run_update(payload))
    run = sel.run_for(user=user, run_id=run.pk)
    ids = svc.mlflow_experiment_ids(projects=[run.project])
    return _json({"run_info": sel.run_info(run, ids[run.project])})


@_endpoint("POST")
def run_search(request, user, payload):
    raw_ids = payload.get("experiment_ids") or []
    if type(raw_ids) is not list or len(raw_ids) > 1000:
        raise proto.bad("experiment_ids", "must be a list of at most 1000 experiment ids", raw_ids)
    projects = []
    for i, raw in enumerate(raw_ids):
        try:
            project = sel.project_of_experiment(experiment_id=proto.experiment_id(raw, f"experiment_ids[{i}]"))
        except MlflowError as exc:
            if exc.code != NOT_FOUND:
                raise
            project = None  # an unknown experiment has no runs
        if project is not None:
            projects.append(project)
    clauses = proto.parse_filter(proto.string(payload, "filter"))
    order = proto.parse_order_by(payload.get("order_by"))
    limit = proto.max_results(payload.get("max_results"), default=proto.SEARCH_MAX_RESULTS_DEFAULT,
                              limit=proto.SEARCH_MAX_RESULTS)
    offset = max(0, proto.page_token_decode(payload.get("page_token")))
    if proto.view_type(payload.get("run_view_type")) == 2:  # r1lab deletes runs for good: none is ever "deleted"
        return _json({"runs": []})
    runs, more = sel.runs_search(user=user, projects=projects, clauses=clauses, order=order, offset=offset, limit=limit)
    out: dict = {"runs": _runs_json(runs)}
    if more:
        out["next_page_token"] = proto.page_token_encode(offset + limit)
    return _json(out)


# --- logging -------------------------------------------------------------------------------------------


@_endpoint("POST", write=True)
def run_log_batch(request, user, payload):
    run = _run(user, payload, write=True)
    svc.mlflow_run_log(run=run, batch=proto.parse_log_batch(payload))
    return _json({})


@_endpoint("POST", write=True)
def run_log_metric(request, user, payload):
    run = _run(user, payload, write=True)
    svc.mlflow_run_log(run=run, batch=proto.parse_log_metric(payload))
    return _json({})


@_endpoint("POST", write=True)
def run_log_parameter(request, user, payload):
    run = _run(user, payload, write=True)
    svc.mlflow_run_log(run=run, batch=proto.parse_log_param(payload))
    return _json({})


@_endpoint("POST", write=True)
def run_set_tag(request, user, payload):
    run = _run(user, payload, write=True)
    svc.mlflow_run_log(run=run, batch=proto.parse_set_tag(payload))
    return _json({})


@_endpoint("GET")
def metric_history(request, user, payload):
    run = _run(user, payload)
    key = proto.string(payload, "metric_key", required=True)
    limit = proto.max_results(payload.get("max_results"), default=proto.HISTORY_MAX_RESULTS, limit=proto.HISTORY_MAX_RESULTS)
    first = max(0, proto.page_token_decode(payload.get("page_token")))
    metrics, next_step = sel.metric_history_json(run_id=run.pk, key=key, first_step=first, limit=limit)
    tail = b"" if next_step is None else b',"next_page_token":' + orjson.dumps(proto.page_token_encode(next_step))
    return HttpResponse(b'{"metrics":' + metrics + tail + b"}", content_type="application/json")


# --- what r1lab does not serve ----------------------------------------------------------------------------


def _unserved(message_of):
    """An endpoint r1lab does not serve, any method: a clear MLflow error (after authentication,
    like every other one)."""

    @wraps(message_of)
    def wrapped(request, rest: str = ""):
        try:
            _user(request, write=False)
            raise message_of(request)
        except MlflowError as exc:
            return error_response(exc)

    wrapped.r1lab_action = "runs.view"
    return csrf_exempt(wrapped)


@_unserved
def artifacts(request):
    """`artifacts/list`, `mlflow-artifacts/…` (log_artifact, log_model)."""
    return MlflowError("NOT_IMPLEMENTED", ARTIFACTS_MESSAGE)


@_unserved
def not_served(request):
    return MlflowError("ENDPOINT_NOT_FOUND", (
        f"r1lab does not serve {request.method} {request.path}. Its MLflow endpoints: experiments get-by-name, "
        "create, get; runs create, get, update, search, log-batch, log-metric, log-parameter, set-tag; "
        "metrics get-history"))
