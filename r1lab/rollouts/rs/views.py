"""HTML views of the rejection-sampling workbench (session auth, each guarded by @require_action)."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from r1lab.accounts.permissions import can, require_action
from r1lab.pipelines.models import Stage
from r1lab.rollouts.rs import selectors, services
from r1lab.rollouts.render import attach_cards
from r1lab.rollouts.forms import FreezeForm, RSRowFilterForm, SpotCheckForm, SpotMarkForm
from r1lab.rollouts.models import RSDataset, SpotCheck, SpotCheckItem
from r1lab.rollouts.views import PAGE, errors_text, filters_from, int_param


def _stage_or_404(stage_id: int) -> Stage:
    stage = selectors.rs_stage(stage_id=stage_id)
    if stage is None:
        raise Http404("no such rejection-sampling stage")
    return stage


@require_action("runs.view")
def rs_detail(request, stage_id: int):
    """Funnel, kept / removed rows with the filters and the reason, spot-check, freeze."""
    stage = _stage_or_404(stage_id)
    dataset = selectors.rs_dataset(stage=stage)
    ctx = {"stage": stage, "dataset": dataset, "can_spot": can(request.user, "rollouts.spotcheck"),
           "can_freeze": can(request.user, "rollouts.freeze") and can(request.user, "curation.review")}
    if dataset is None:
        return render(request, "rollouts/rs_detail.html", ctx)
    form, filters, order = filters_from(request, RSRowFilterForm)
    view = (form.cleaned_data.get("view") if form.is_bound and form.is_valid() else "") or "kept"
    reason = (form.cleaned_data.get("reason") if form.is_bound and form.is_valid() else "") or None
    offset = int_param(request.GET.get("offset"))
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
        messages.error(request, f"Not loaded: {errors_text(exc)}")
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
        messages.error(request, errors_text(exc))
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
        messages.error(request, f"Not frozen: {errors_text(exc)}")
    except PermissionDenied as exc:
        messages.error(request, f"Not frozen: {exc}")
    else:
        messages.success(request, f"Frozen: {version.label}.")
    return redirect("rollouts:rs", stage_id=stage.pk)
