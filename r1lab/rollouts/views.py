"""HTML views of the rollout browser (the workbench's are in rs/views.py; session auth, each
guarded by @require_action). Thin: a form, then a selector or a service."""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from r1lab.accounts.permissions import can, require_action
from r1lab.curation.models import CurationProject
from r1lab.pipelines.state_machine import PipelineValidationError
from r1lab.rollouts import selectors, services
from r1lab.rollouts.render import attach_cards, group_html
from r1lab.rollouts.forms import LINEAGE_CLASSES, LineageExportForm, LineageForm, RolloutFilterForm, SendToCurationForm
from r1lab.tracking.selectors import runs_visible

PAGE = 50


def _run_or_404(request, run_id: int):
    run = runs_visible(user=request.user).filter(pk=run_id).first()
    if run is None:
        raise Http404("no such run")
    return run


def errors_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def filters_from(request, form_class=RolloutFilterForm):
    form = form_class(request.GET or None)
    if form.is_bound and form.is_valid():
        return form, form.filters(), form.order
    return form, {}, None


def _send_context(request) -> dict:
    can_send = can(request.user, "rollouts.send")
    return {"can_send": can_send,
            "projects": selectors.send_targets() if can_send else []}


def int_param(value, default: int = 0) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


@require_action("runs.view")
def index(request):
    return render(request, "rollouts/index.html", {"runs": selectors.runs_with_samples(user=request.user),
                                                   "stages": selectors.rs_stages()})


@require_action("runs.view")
def run_rollouts(request, run_id: int):
    """The run's sample steps, and a filtered search over every rollout of the run."""
    run = _run_or_404(request, run_id)
    form, filters, order = filters_from(request)
    offset = int_param(request.GET.get("offset"))
    window = None
    step_min = step_max = None
    if filters.get("text"):
        windows = selectors.text_windows(run=run)
        if windows:
            w = min(int_param(request.GET.get("window")), len(windows) - 1)
            step_min, step_max = windows[w]
            window = {"index": w, "count": len(windows), "first": step_min, "last": step_max,
                      "prev": w - 1 if w else None, "next": w + 1 if w + 1 < len(windows) else None,
                      "steps": selectors.TEXT_WINDOW_STEPS}
    results, has_next = (selectors.run_search(run=run, filters=filters, order=order, offset=offset, limit=PAGE,
                                              step_min=step_min, step_max=step_max)
                         if any(v is not None for v in filters.values()) or order else ([], False))
    query = request.GET.copy()
    query.pop("offset", None)
    window_query = query.copy()
    window_query.pop("window", None)
    attach_cards(results, send=can(request.user, "rollouts.send"))
    return render(request, "rollouts/run.html", {
        "run": run, "form": form, "steps": selectors.run_sample_steps(run=run), "results": results,
        "searched": bool(filters and any(v is not None for v in filters.values())) or bool(order),
        "offset": offset, "next_offset": offset + PAGE if has_next else None, "prev_offset": max(0, offset - PAGE) if offset else None,
        "query": query.urlencode(), "window": window, "window_query": window_query.urlencode(), **_send_context(request),
    })


@require_action("runs.view")
def step_detail(request, run_id: int, step: int):
    """One step: its prompts, each with the group of G completions."""
    run = _run_or_404(request, run_id)
    form, filters, order = filters_from(request)
    data = selectors.step_groups(run=run, step=step, filters=filters, order=order)
    prev, nxt = selectors.step_neighbours(run=run, step=step)
    aha = selectors.aha_prompts(run=run, step=step) if request.GET.get("reflection") == "1" else []
    send = can(request.user, "rollouts.send")
    prompt_url = reverse("rollouts:prompt", args=[run.pk])
    for g in data["groups"]:
        g.card = group_html(g, prompt_url=prompt_url, send=send)
    return render(request, "rollouts/step.html", {
        "run": run, "step": step, "form": form, "filtered": any(v is not None for v in filters.values()),
        "prev_step": prev, "next_step": nxt, "aha": aha, "query": request.GET.urlencode(), **data, **_send_context(request),
    })


@require_action("runs.view")
def prompt_history(request, run_id: int):
    """The same prompt across steps: ?prompt_id=…"""
    run = _run_or_404(request, run_id)
    prompt_id = (request.GET.get("prompt_id") or "").strip()
    if not prompt_id:
        raise Http404("no prompt_id")
    offset = int_param(request.GET.get("offset"))
    data = selectors.prompt_history(run=run, prompt_id=prompt_id, offset=offset, limit=10)
    if not data["total_steps"]:
        raise Http404("no rollouts of that prompt in this run")
    send = can(request.user, "rollouts.send")
    for st in data["steps"]:
        attach_cards(st["completions"], send=send)
    chart = {"steps": [r["step"] for r in data["summary"]], "reward": [r["reward"] for r in data["summary"]],
             "accuracy": [r["accuracy"] for r in data["summary"]], "reflection": [r["reflection"] for r in data["summary"]],
             "length": [r["length"] for r in data["summary"]]}
    return render(request, "rollouts/prompt.html", {
        "run": run, "prompt_id": prompt_id, "chart": chart, "offset": offset,
        "next_offset": offset + 10 if offset + 10 < data["total_steps"] else None, "prev_offset": max(0, offset - 10) if offset else None,
        **data, **_send_context(request),
    })


@require_action("rollouts.send")
@require_POST
def send_to_curation(request):
    """One completion → a cold-start draft in curation (the chosen project, else "Rollout drafts")."""
    form = SendToCurationForm(request.POST)
    sample_id = int_param(request.POST.get("sample"), -1)
    if not form.is_valid() or sample_id < 0:
        raise Http404("bad request")
    nxt = form.cleaned_data.get("next") or ""
    if not url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        nxt = ""
    sample = selectors.sample_visible(user=request.user, sample_id=sample_id)
    if sample is None:
        raise Http404("no such sample")
    project = None
    if form.cleaned_data.get("project"):
        project = get_object_or_404(CurationProject, pk=form.cleaned_data["project"])
    try:
        result = services.sample_send_to_curation(sample=sample, user=request.user, project=project)
    except ValidationError as exc:
        messages.error(request, f"Not sent: {errors_text(exc)}")
    else:
        ex = result.example
        verb = "Sent to curation" if result.created else "Already in curation"
        messages.success(request, f"{verb}: example {ex.pk} ({ex.status}) in {ex.project.name}.")
    target = nxt or reverse("rollouts:step", args=[sample.run_id, sample.step])
    return redirect(f"{target}#s{sample.pk}" if "#" not in target else target)


LINEAGE_PAGE = 50


@require_action("runs.view")
def prompt_lineage(request, run_id: int):
    """What the model learned: each prompt's solve rate over the steps it was sampled at, its class,
    the class counts over steps, and a table of the prompts (by class, sortable) linking to each
    prompt's groups across steps."""
    run = _run_or_404(request, run_id)
    form = LineageForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(" ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
                                      content_type="text/plain; charset=utf-8")
    cls, sort, offset = form.cleaned_data["cls"] or None, form.cleaned_data["sort"], form.cleaned_data["offset"] or 0
    rows, has_next = selectors.prompt_lineage_rows(run=run, cls=cls, sort=sort, offset=offset, limit=LINEAGE_PAGE)
    counts = selectors.prompt_lineage_counts(run=run)
    classes = [{"key": c, "label": selectors.CLASS_LABELS[c], "help": selectors.CLASS_HELP[c], "count": counts[c]}
               for c in LINEAGE_CLASSES]
    base = {"cls": cls or ""}
    columns = [(key, label, _sort_query({**base, "sort": _toggle(sort, key)}), sort.lstrip("-") == key, sort.startswith("-"))
               for key, label in (("prompt", "prompt"), ("class", "class"), ("samplings", "sampled"), ("first_step", "first step"),
                                  ("first_rate", "first rate"), ("last_step", "last step"), ("last_rate", "last rate"),
                                  ("delta", "change"), ("rate", "overall"))]
    return render(request, "rollouts/lineage.html", {
        "run": run, "rows": rows, "classes": classes, "counts": counts, "cls": cls or "", "sort": sort, "columns": columns,
        "offset": offset, "next_query": _sort_query({**base, "sort": sort, "offset": offset + LINEAGE_PAGE}) if has_next else None,
        "prev_query": _sort_query({**base, "sort": sort, "offset": max(0, offset - LINEAGE_PAGE)}) if offset else None,
        "timeline": selectors.prompt_lineage_timeline(run=run) if counts["all"] else None,
        "missing": not counts["all"] and selectors.prompt_lineage_missing(run=run),
        "exports": selectors.lineage_exports(run=run),
        "can_export": can(request.user, "models.manage"), "can_rebuild": can(request.user, "runs.launch"),
        "prompt_url": reverse("rollouts:prompt", args=[run.pk]),
    })


def _toggle(sort: str, key: str) -> str:
    """The sort a column header links to: its key, descending when it is the current ascending sort."""
    return f"-{key}" if sort == key else key


def _sort_query(params: dict) -> str:
    return urlencode({k: v for k, v in params.items() if v not in ("", None)})


@require_action("models.manage")
@require_POST
def lineage_export(request, run_id: int):
    """One click: a class of the run's prompts → a new prompt set (recorded in the lineage graph)."""
    run = _run_or_404(request, run_id)
    form = LineageExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Not exported: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("rollouts:lineage", run_id=run.pk)
    try:
        ps = services.prompt_class_export(run=run, cls=form.cleaned_data["cls"], user=request.user,
                                          name=form.cleaned_data["name"])
    except ValidationError as exc:
        messages.error(request, f"Not exported: {errors_text(exc)}")
    except PipelineValidationError as exc:
        messages.error(request, "Not exported: " + "; ".join(exc.errors.values()))
    else:
        messages.success(request, f"Exported {ps.train_count} {selectors.CLASS_LABELS[ps.source_class]} prompts as the prompt set "
                                  f"{ps.name!r}: pick it in the launch form (or a fork's) to train on them.")
    return redirect(f"{reverse('rollouts:lineage', args=[run.pk])}?cls={form.cleaned_data['cls']}")


@require_action("runs.launch")
@require_POST
def lineage_rebuild(request, run_id: int):
    """Fill the prompt-lineage rollup of a run logged before it existed (one pass over its rollouts)."""
    run = _run_or_404(request, run_id)
    n = services.prompt_lineage_rebuild(run=run, user=request.user)
    messages.success(request, f"Prompt lineage rebuilt from the rollouts: {n} prompts.")
    return redirect("rollouts:lineage", run_id=run.pk)
