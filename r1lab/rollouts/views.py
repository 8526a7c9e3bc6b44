"""HTML views of the rollout browser and the rejection-sampling workbench (session auth, each
guarded by @require_action). Thin: a form, then a selector or a service."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from r1lab.accounts.permissions import can, require_action
from r1lab.curation.models import CurationProject
from r1lab.pipelines.models import Stage
from r1lab.rollouts import selectors, services
from r1lab.rollouts.render import attach_cards, group_html
from r1lab.rollouts.forms import FreezeForm, RolloutFilterForm, RSRowFilterForm, SendToCurationForm, SpotCheckForm, SpotMarkForm
from r1lab.rollouts.models import RSDataset, SpotCheck, SpotCheckItem
from r1lab.tracking.models import Sample
from r1lab.tracking.selectors import runs_visible

PAGE = 50


def _run_or_404(request, run_id: int):
    run = runs_visible(user=request.user).filter(pk=run_id).first()
    if run is None:
        raise Http404("no such run")
    return run


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _filters(request, form_class=RolloutFilterForm):
    form = form_class(request.GET or None)
    if form.is_bound and form.is_valid():
        return form, form.filters(), form.order
    return form, {}, None


def _send_context(request) -> dict:
    can_send = can(request.user, "rollouts.send")
    return {"can_send": can_send,
            "projects": list(CurationProject.objects.order_by("name").values("id", "name", "slug")) if can_send else []}


def _int(value, default: int = 0) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


@require_action("runs.view")
def index(request):
    runs = list(runs_visible(user=request.user).filter(Exists(Sample.objects.filter(run=OuterRef("pk"))))[:300])
    stages = list(Stage.objects.filter(kind="rejection_sampling").select_related("run", "rs_dataset").order_by("-run__created_at", "index")[:300])
    return render(request, "rollouts/index.html", {"runs": runs, "stages": stages})


@require_action("runs.view")
def run_rollouts(request, run_id: int):
    """The run's sample steps, and a filtered search over every rollout of the run."""
    run = _run_or_404(request, run_id)
    form, filters, order = _filters(request)
    offset = _int(request.GET.get("offset"))
    window = None
    step_min = step_max = None
    if filters.get("text"):
        windows = selectors.text_windows(run=run)
        if windows:
            w = min(_int(request.GET.get("window")), len(windows) - 1)
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
    form, filters, order = _filters(request)
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
    offset = _int(request.GET.get("offset"))
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
    sample_id = _int(request.POST.get("sample"), -1)
    if not form.is_valid() or sample_id < 0:
        raise Http404("bad request")
    nxt = form.cleaned_data.get("next") or ""
    if not url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        nxt = ""
    sample = get_object_or_404(Sample.objects.select_related("run"), pk=sample_id)
    if not runs_visible(user=request.user).filter(pk=sample.run_id).exists():
        raise Http404("no such sample")
    project = None
    if form.cleaned_data.get("project"):
        project = get_object_or_404(CurationProject, pk=form.cleaned_data["project"])
    try:
        result = services.sample_send_to_curation(sample=sample, user=request.user, project=project)
    except ValidationError as exc:
        messages.error(request, f"Not sent: {_errors(exc)}")
    else:
        ex = result.example
        verb = "Sent to curation" if result.created else "Already in curation"
        messages.success(request, f"{verb}: example {ex.pk} ({ex.status}) in {ex.project.name}.")
    target = nxt or reverse("rollouts:step", args=[sample.run_id, sample.step])
    return redirect(f"{target}#s{sample.pk}" if "#" not in target else target)


# --- rejection-sampling workbench -------------------------------------------------------------------


def _stage_or_404(stage_id: int) -> Stage:
    stage = Stage.objects.select_related("run").filter(pk=stage_id, kind="rejection_sampling").first()
    if stage is None:
        raise Http404("no such rejection-sampling stage")
    return stage


@require_action("runs.view")
def rs_detail(request, stage_id: int):
    """Funnel, kept / removed rows with the filters and the reason, spot-check, freeze."""
    stage = _stage_or_404(stage_id)
    dataset = RSDataset.objects.filter(stage=stage).select_related("dataset_version", "curation_project").first()
    ctx = {"stage": stage, "dataset": dataset, "can_spot": can(request.user, "rollouts.spotcheck"),
           "can_freeze": can(request.user, "rollouts.freeze") and can(request.user, "curation.review")}
    if dataset is None:
        return render(request, "rollouts/rs_detail.html", ctx)
    form, filters, order = _filters(request, RSRowFilterForm)
    view = (form.cleaned_data.get("view") if form.is_bound and form.is_valid() else "") or "kept"
    reason = (form.cleaned_data.get("reason") if form.is_bound and form.is_valid() else "") or None
    offset = _int(request.GET.get("offset"))
    qs = selectors.rs_rows(dataset=dataset, kept=view == "kept", reason=reason if view == "removed" else None, filters=filters, order=order)
    rows = list(qs[offset:offset + PAGE + 1])
    names = selectors.component_names(rows)
    cards = [selectors.completion_view(r, names) for r in rows[:PAGE]]
    attach_cards(cards, show_index=False)
    query = request.GET.copy()
    query.pop("offset", None)
    spot = selectors.latest_spot_check(dataset=dataset)
    ctx.update({
        "form": form, "view": view, "reason": reason, "rows": cards,
        "offset": offset, "next_offset": offset + PAGE if len(rows) > PAGE else None, "prev_offset": max(0, offset - PAGE) if offset else None,
        "query": query.urlencode(), "funnel": selectors.funnel_chart(dataset=dataset), "reasons": selectors.rs_reason_counts(dataset=dataset),
        "spot": selectors.spot_check_summary(spot_check=spot), "spot_form": SpotCheckForm(), "freeze_form": FreezeForm(),
        "bad_count": len(selectors.rs_bad_row_ids(dataset=dataset)),
        "freeze_refusal": selectors.rs_freeze_refusal(dataset=dataset, user=request.user) if ctx["can_freeze"] else None,
    })
    return render(request, "rollouts/rs_detail.html", ctx)


@require_action("rollouts.spotcheck")
@require_POST
def rs_load(request, stage_id: int):
    stage = _stage_or_404(stage_id)
    try:
        ds = services.rs_dataset_load(stage=stage, user=request.user)
    except ValidationError as exc:
        messages.error(request, f"Not loaded: {_errors(exc)}")
    else:
        messages.success(request, f"Loaded {ds.kept_count} kept and {ds.removed_count} removed samples.")
    return redirect("rollouts:rs", stage_id=stage.pk)


@require_action("rollouts.spotcheck")
@require_POST
def spot_check_new(request, stage_id: int):
    stage = _stage_or_404(stage_id)
    dataset = get_object_or_404(RSDataset, stage=stage)
    form = SpotCheckForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Spot-check size: " + " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("rollouts:rs", stage_id=stage.pk)
    try:
        check = services.spot_check_create(dataset=dataset, size=form.cleaned_data["size"], user=request.user)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("rollouts:rs", stage_id=stage.pk)
    return redirect("rollouts:spot", pk=check.pk)


@require_action("runs.view")
def spot_check_detail(request, pk: int):
    check = get_object_or_404(SpotCheck.objects.select_related("dataset__stage__run"), pk=pk)
    items = selectors.spot_check_items(spot_check=check)
    attach_cards([c for _, c in items], show_index=False)
    return render(request, "rollouts/spot_check.html", {
        "check": check, "stage": check.dataset.stage, "items": items,
        "summary": selectors.spot_check_summary(spot_check=check), "can_spot": can(request.user, "rollouts.spotcheck"),
    })


@require_action("rollouts.spotcheck")
@require_POST
def spot_check_mark(request, item_id: int):
    item = get_object_or_404(SpotCheckItem, pk=item_id)
    form = SpotMarkForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A verdict is good or bad.")
    else:
        services.spot_check_mark(item=item, verdict=form.cleaned_data["verdict"], note=form.cleaned_data["note"], user=request.user)
    return redirect(reverse("rollouts:spot", args=[item.spot_check_id]) + f"#i{item.pk}")


@require_action("rollouts.freeze")
@require_POST
def rs_freeze(request, stage_id: int):
    stage = _stage_or_404(stage_id)
    dataset = get_object_or_404(RSDataset, stage=stage)
    form = FreezeForm(request.POST)
    form.is_valid()
    try:
        version = services.rs_dataset_freeze(dataset=dataset, user=request.user, note=form.cleaned_data.get("note", ""))
    except ValidationError as exc:
        messages.error(request, f"Not frozen: {_errors(exc)}")
    except PermissionDenied as exc:
        messages.error(request, f"Not frozen: {exc}")
    else:
        messages.success(request, f"Frozen: {version.label}.")
    return redirect("rollouts:rs", stage_id=stage.pk)
