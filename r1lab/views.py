"""Project-level pages: the home redirect and the health check."""
from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from r1lab.preflight import PreflightError, check_broker

log = logging.getLogger(__name__)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("pipelines:list")


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # health reports any failure instead of raising
        return {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def _check_broker() -> dict:
    from django.conf import settings

    try:
        check_broker()
    except PreflightError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "transport": "redis" if settings.REDIS_URL else "filesystem"}


def _check_channel_layer() -> dict:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer configured"}
    try:
        channel = async_to_sync(layer.new_channel)("healthz.")
        token = uuid.uuid4().hex
        async_to_sync(layer.send)(channel, {"type": "healthz.ping", "token": token})
        message = async_to_sync(layer.receive)(channel)
        ok = message.get("token") == token
    except Exception as exc:  # health reports any failure instead of raising
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    return {"ok": ok, "backend": type(layer).__name__}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker and channel layer status as JSON; 503 if any is down.

    Anyone (a load balancer, the demo's start-up wait) may ask, so an anonymous caller gets
    only ok/down per component: the detail names the database vendor and transports, and an
    error's text may carry host names, URLs or paths. Staff get the detail; the server log
    gets every error whoever asked."""
    checks = {"database": _check_database(), "broker": _check_broker(), "channel_layer": _check_channel_layer()}
    ok = all(c["ok"] for c in checks.values())
    for name, check in checks.items():
        if not check["ok"]:
            log.warning("healthz: %s is down: %s", name, check.get("error", "no detail"))
    if not (request.user.is_authenticated and request.user.is_staff):
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return JsonResponse({"ok": ok, **checks}, status=200 if ok else 503)
