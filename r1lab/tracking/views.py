"""HTML views of tracked runs (session auth, guarded by @require_action). Thin: a form or a query
parser, then a service or a selector."""
from __future__ import annotations


from urllib.parse import quote, urlsplit

import orjson
from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from r1lab import csv_export
from r1lab.accounts.permissions import can, require_action
from r1lab.tracking import alert_services, selectors, services
from r1lab.tracking.forms import AlertSettingsForm, CommentForm, NotesForm
from r1lab.tracking.models import AlertSettings
from r1lab.tracking.run_query import QueryError

def _run_or_404(request, run_id: int):
    run = selectors.run_visible(user=request.user, run_id=run_id)
    if run is None:
        raise Http404("no such run")
    return run


@require_action("runs.view")
def run_list(request):
    """The runs list: `q` (the query, run_query.py), `sort` (`-reward.last`), `cols` (chosen
    columns), `project`, `page`: the view is its URL. A query that does not parse is a 400 page
    that says where, and lists nothing."""
    project = request.GET.get("project") or None
    query, sort = request.GET.get("q", ""), request.GET.get("sort", "")
    cols = request.GET.get("cols")
    page = request.GET.get("page", "1")
    context = {"projects": selectors.run_projects(user=request.user), "project": project, "q": query,
               "sort": sort, "cols": selectors.DEFAULT_COLUMNS_TEXT if cols is None else cols, "error": None}
    try:
        table = selectors.runs_find(user=request.user, query=query, sort=sort, columns=cols, project=project,
                                    page=int(page) if page.isdigit() and len(page) < 7 else 1)
    except QueryError as exc:
        context["error"] = {"param": exc.param, "column": exc.column, "message": exc.message, "text": exc.text,
                            "caret": " " * (exc.column - 1) + "^"}
        return render(request, "tracking/run_list.html", context, status=400)
    context.update(table=table, headers=_sort_headers(request, table), pages=_page_links(request, table))
    return render(request, "tracking/run_list.html", context)


def _with(request, **params) -> str:
    """This page's URL with some parameters changed (a new sort starts at page 1)."""
    q = request.GET.copy()
    if "page" not in params:
        q.pop("page", None)
    for k, v in params.items():
        q[k] = v
    return "?" + q.urlencode()


_FIXED_HEADERS = [("Run", "name"), ("Project", "project"), ("Status", "status"), ("Started", "created"),
                  ("Last report", None)]


def _sort_headers(request, table) -> list[dict]:
    """Each column's header: its title, whether the list is sorted by it, and the link that sorts
    by it (descending first; again: ascending)."""
    out = []
    for title, label in [*_FIXED_HEADERS, *[(c.label, c.label) for c in table.columns]]:
        current = label is not None and table.sort.label == label
        out.append({"title": title, "field": label or "", "sorted": ("desc" if table.descending else "asc") if current else "",
                    "href": None if label is None else _with(request, sort=label if current and table.descending else f"-{label}"),
                    "added": label in table.added})
    return out


def _page_links(request, table) -> dict:
    return {"prev": _with(request, page=str(table.page - 1)) if table.page > 1 else None,
            "next": _with(request, page=str(table.page + 1)) if table.page < table.pages else None}


@require_action("runs.view")
def run_detail(request, run_id: int):
    run = _run_or_404(request, run_id)
    return render(request, "tracking/run_detail.html", {
        "run": run,
        "comments": selectors.run_comments(run=run),
        "comment_form": CommentForm(),
        "notes_form": NotesForm(initial={"notes": run.notes}),
        "can_comment": can(request.user, "runs.comment"),
    })


@require_action("runs.view")
def run_data(request, run_id: int):
    run = _run_or_404(request, run_id)
    try:
        query = selectors.parse_window_query(request.GET)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return HttpResponse(orjson.dumps(selectors.run_series_data(run=run, **query)), content_type="application/json")


@require_action("runs.view")
def run_keys(request, run_id: int):
    """Every metric key of the run: a page whose socket was closed lists the keys logged meanwhile."""
    run = _run_or_404(request, run_id)
    return HttpResponse(orjson.dumps({"run": run.pk, "keys": selectors.run_keys(run=run)}), content_type="application/json")


SIGNALS_CACHE_S = 10


@require_action("runs.view")
def run_signals(request, run_id: int):
    """The aha moment and alarms, for a live page to refresh its badges and marker. Computed at most
    once per SIGNALS_CACHE_S per run and process: 50 open pages polling cost one computation."""
    run = _run_or_404(request, run_id)
    data = cache.get_or_set(f"tracking:signals:{run.pk}", lambda: selectors.run_signals(run=run), SIGNALS_CACHE_S)
    return HttpResponse(orjson.dumps(data), content_type="application/json")


class _Echo:
    def write(self, value):
        return value


@require_action("runs.view")
def run_csv(request, run_id: int):
    """Every point (not downsampled) of the requested keys, as CSV."""
    run = _run_or_404(request, run_id)
    keys = [k for k in (request.GET.get("keys") or "").split(",") if k]
    min_step, max_step = request.GET.get("min_step"), request.GET.get("max_step")
    points = selectors.run_points(run=run, keys=keys or None,
                                  min_step=int(min_step) if min_step and min_step.lstrip("-").isdigit() else None,
                                  max_step=int(max_step) if max_step and max_step.lstrip("-").isdigit() else None)
    writer = csv_export.writer(_Echo())  # formula-safe: keys are untrusted text

    def rows():
        yield writer.writerow(["run", "key", "step", "value", "wall_time"])
        for key, step, value, ts in points:
            yield writer.writerow([run.pk, key, step, value, ts])  # floats: written as repr, never escaped

    filename = f"run{run.pk}-{'-'.join(keys)[:80] or 'all'}.csv".replace("/", "_")
    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
@require_action("runs.comment")
def comment_add(request, run_id: int):
    run = _run_or_404(request, run_id)
    form = CommentForm(request.POST)
    if form.is_valid():
        services.comment_create(run=run, step=form.cleaned_data["step"], body=form.cleaned_data["body"], user=request.user)
        messages.success(request, f"Comment pinned to step {form.cleaned_data['step']}.")
    else:
        messages.error(request, "Comment not saved: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
    return redirect("tracking:run", run_id=run.pk)


@require_POST
@require_action("runs.comment")
def notes_update(request, run_id: int):
    run = _run_or_404(request, run_id)
    form = NotesForm(request.POST)
    if form.is_valid():
        services.tracked_run_notes_update(run=run, notes=form.cleaned_data["notes"])
        messages.success(request, "Notes saved.")
    else:
        messages.error(request, "Notes not saved: " + "; ".join(" ".join(v) for v in form.errors.values()))
    return redirect("tracking:run", run_id=run.pk)


@require_action("runs.view")
def compare(request):
    ids = [int(raw) for raw in (request.GET.get("runs") or "").split(",") if raw.strip().isdigit()]
    metrics = [m for m in (request.GET.get("metrics") or "").split(",") if m] or None
    data = selectors.compare_data(user=request.user, run_ids=ids, metrics=metrics)
    chart = {"mode": "compare", "runs": data["series"], "metrics": data["metrics"], "keys": data["all_keys"],
             "stale_after_s": settings.R1LAB_STALE_AFTER_S}
    return render(request, "tracking/compare.html", {
        "runs": data["runs"], "metrics": data["metrics"], "all_keys": data["all_keys"], "chart": chart,
        "config_rows": data["config_rows"],
        "all_runs": selectors.runs_visible(user=request.user)[:300],
    })


# --- alarms that notify ------------------------------------------------------------------------------


def _masked(delivery) -> str:
    """A webhook URL holds its secret in the path: shown as scheme://host/…; addresses as they are."""
    if delivery.channel != "webhook":
        return delivery.target
    parts = urlsplit(delivery.target)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "…"


@require_action("runs.view")
def notifications(request):
    """What the alarms sent, and how each delivery went; the projects' settings."""
    project = request.GET.get("project") or None
    deliveries = selectors.deliveries_list(project=project)
    return render(request, "tracking/notifications.html", {
        "rows": [(d, _masked(d)) for d in deliveries], "project": project,
        "settings_rows": selectors.alert_settings_list(), "can_manage": can(request.user, "alerts.manage"),
        "projects": selectors.run_projects(user=request.user),
    })


@require_action("alerts.manage")
def alert_settings(request):
    """A project's alarm settings (`?project=`; "" is every project without its own)."""
    project = (request.POST.get("project") if request.method == "POST" else request.GET.get("project")) or ""
    if len(project) > 100:
        return HttpResponse("project: at most 100 characters", status=400, content_type="text/plain")
    existing = AlertSettings.objects.filter(project=project).first()
    if request.method == "POST":
        form = AlertSettingsForm(request.POST, instance=existing or AlertSettings(project=project))
        if form.is_valid():
            alert_services.alert_settings_save(project=project, values=form.cleaned_data, user=request.user)
            messages.success(request, f"Alarm settings saved for {project or 'every project'}.")
            return redirect(reverse("tracking:notifications") + (f"?project={quote(project)}" if project else ""))
        return render(request, "tracking/alert_settings.html", {"form": form, "project": project}, status=400)
    form = AlertSettingsForm(instance=existing or AlertSettings(project=project))
    return render(request, "tracking/alert_settings.html", {"form": form, "project": project})
