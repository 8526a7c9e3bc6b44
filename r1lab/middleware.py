"""Request guards that apply to every view.

`RejectNulQueryMiddleware`: PostgreSQL cannot compare or store U+0000, so a query parameter
holding one (`?prompt_id=%00`) made every view that filtered on it answer 500. Such a request is
refused up front with a 400 that names the parameter. Form fields are covered by Django's own
`ProhibitNullCharactersValidator` on every CharField; JSON bodies by the API validators.
"""
from __future__ import annotations

from django.http import HttpResponse, JsonResponse


class RejectNulQueryMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "%00" in request.META.get("QUERY_STRING", ""):  # a NUL arrives percent-encoded
            for name, values in request.GET.lists():
                if "\x00" in name or any("\x00" in v for v in values):
                    message = f"query parameter {name.replace(chr(0), '␀')!r} contains a NUL (\\u0000) character"
                    if request.path.startswith(("/api/2.0/mlflow", "/api/3.0/mlflow")):  # MLflow's error shape
                        return JsonResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": message}, status=400)
                    if request.path.startswith("/api/"):
                        return JsonResponse({"error": message}, status=400)
                    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
