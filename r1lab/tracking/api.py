"""The ingest API (`/api/v1/`): bearer-token authenticated, JSON in and out, CSRF-exempt.

Views are thin: authenticate, hand the body to the validator, call a service, answer. Every
rejection is all-or-nothing with a message that names what is wrong.
"""
from __future__ import annotations

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from r1lab.accounts.permissions import can
from r1lab.accounts.selectors import api_token_user, bearer_token
from r1lab.tracking import selectors, services
from r1lab.tracking.ingest import IngestError, parse_config_body, parse_log_body, parse_rewind_body, parse_run_create
from r1lab.tracking.models import Run
from r1lab.tracking.store import SeriesLimitError
from r1lab.tracking.openapi import OPENAPI


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _json(data, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def _body(request) -> bytes:
    length = request.headers.get("Content-Length")
    limit = settings.R1LAB_INGEST_MAX_BYTES
    if length and length.isdigit() and int(length) > limit:
        raise IngestError(413, f"body is {int(length)} bytes; the limit is {limit} (send smaller batches)")
    try:
        body = request.body
    except RequestDataTooBig:
        raise IngestError(413, f"body is over the limit of {limit} bytes (send smaller batches)") from None
    if len(body) > limit:
        raise IngestError(413, f"body is {len(body)} bytes; the limit is {limit} (send smaller batches)")
    return body


def _run_for_token(request, run_id: int) -> Run:
    """The run this request may write to: its own run token, else 401/403/404."""
    raw = bearer_token(request)
    if not raw:
        raise IngestError(401, "missing `Authorization: Bearer <run token>` header")
    token_run = selectors.run_for_token(raw=raw)
    if token_run is None:
        if api_token_user(raw=raw) is not None:
            raise IngestError(403, "a personal token cannot log to a run: use the run's token from POST /api/v1/runs")
        raise IngestError(401, "invalid token")
    if token_run.pk != run_id:
        raise IngestError(403, "this token belongs to another run")
    return token_run


def _user_for_token(request):
    raw = bearer_token(request)
    if not raw:
        raise IngestError(401, "missing `Authorization: Bearer <personal token>` header")
    user = api_token_user(raw=raw)
    if user is None:
        raise IngestError(401, "invalid or revoked personal token")
    return user


def _api(view):
    """Turns IngestError into its JSON answer."""

    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except IngestError as exc:
            return _error(exc.status, exc.message)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return csrf_exempt(wrapped)


@_api
@require_POST
def run_log(request, run_id: int):
    run = _run_for_token(request, run_id)
    body = _body(request)
    parsed = parse_log_body(body)
    try:
        return _json(services.tracked_run_log(run_id=run.pk, parsed=parsed))
    except SeriesLimitError as exc:
        raise IngestError(400, str(exc)) from None


@_api
@require_POST
def run_rewind(request, run_id: int):
    """`{"step": k}`: this attempt continues after step k (-1: from the start); what earlier
    attempts logged after it becomes history and the values logged from now on make the curve."""
    run = _run_for_token(request, run_id)
    step = parse_rewind_body(_body(request))
    rewind = services.tracked_run_rewind(run=run, after_step=step)
    if rewind is None:
        return _json({"step": step, "attempt": run.attempt, "lost": {"metrics": 0, "samples": 0}})
    return _json({"step": step, "attempt": rewind.attempt,
                  "lost": {"metrics": rewind.lost_points, "samples": rewind.lost_samples}})


@_api
@require_POST
def run_config(request, run_id: int):
    """`{"config": {...}}`: set keys of the run's config after it was created (run token)."""
    run = _run_for_token(request, run_id)
    config = parse_config_body(_body(request))
    run = services.tracked_run_config_update(run=Run.objects.get(pk=run.pk), config=config)
    return _json({"id": run.pk, "config": run.config})


@_api
@require_POST
def run_finish(request, run_id: int):
    run = _run_for_token(request, run_id)
    body = _body(request)
    try:
        payload = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"body is not valid JSON: {exc}") from None
    status = payload.get("status") if isinstance(payload, dict) else None
    if status not in ("succeeded", "failed", "cancelled"):
        raise IngestError(400, f"status: must be one of succeeded, failed, cancelled (got {status!r})")
    run = services.tracked_run_finish(run=run, status=status)
    return _json({"id": run.pk, "status": run.status})


@_api
@require_http_methods(["GET", "POST"])
def runs(request):
    user = _user_for_token(request)
    if request.method == "GET":
        if not can(user, "runs.view"):
            raise IngestError(403, "your role may not view runs")
        project = request.GET.get("project") or None
        return _json({"runs": [selectors.run_summary(run=r) for r in selectors.runs_visible(user=user, project=project)[:500]]})
    if not can(user, "runs.launch"):
        raise IngestError(403, "your role may not create runs (researchers may)")
    fields = parse_run_create(_body(request))
    run, token = services.tracked_run_create(**fields, user=user, external=True)
    return _json({"id": run.pk, "token": token, "url": f"{settings.R1LAB_PUBLIC_URL}/api/v1/runs/{run.pk}",
                  "page": f"{settings.R1LAB_PUBLIC_URL}/metrics/runs/{run.pk}/"}, status=201)


@_api
@require_GET
def run_metrics(request, run_id: int):
    """Downsampled series of a run, for scripts (personal token)."""
    user = _user_for_token(request)
    if not can(user, "runs.view"):
        raise IngestError(403, "your role may not view runs")
    run = selectors.run_visible(user=user, run_id=run_id)
    if run is None:
        raise IngestError(404, f"no run {run_id}")
    try:
        query = selectors.parse_window_query(request.GET)
    except ValueError as exc:
        raise IngestError(400, str(exc)) from None
    return _json(selectors.run_series_data(run=run, **query))


@require_GET
def openapi(request):
    return _json(OPENAPI)
