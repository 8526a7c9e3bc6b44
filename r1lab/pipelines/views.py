"""Pipelines pages: thin views. Forms validate, services write, selectors read."""
from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from r1lab.accounts.permissions import can, require_action
from r1lab.dataset_formats import Mapping
from r1lab.dataset_formats.forms import MappingForm
from r1lab.pipelines import prompt_import, selectors, services, state_machine
from r1lab.pipelines.forms import BaseModelForm, ForkForm, LaunchForm, PromptImportForm, RunFilterForm
from r1lab.pipelines.models import BaseModel, PipelineRun, Stage
from r1lab.pipelines.stage_templates import TEMPLATES, get_template as get_pipeline_template, known_kinds


@require_action("runs.view")
def run_list(request):
    filters = RunFilterForm(request.GET or None)
    status = q = ""
    if filters.is_valid():
        status, q = filters.cleaned_data["status"], filters.cleaned_data["q"]
    runs = list(selectors.runs_for_list(user=request.user, status=status, q=q))
    metrics = selectors.runs_key_metrics(runs)
    rows = [{"run": r, "stage": selectors.run_current_stage(r), "metrics": metrics[r.pk]} for r in runs]
    return render(request, "pipelines/run_list.html", {"rows": rows, "filters": filters,
                                                        "can_launch": can(request.user, "runs.launch")})


@require_action("runs.view")
def run_detail(request, run_id: int):
    try:
        run = selectors.run_detail(run_id=run_id)
    except PipelineRun.DoesNotExist:
        raise Http404("no such run") from None
    stages = list(run.stages.all())
    nodes, edges = selectors.run_lineage(run)
    chart_stage = selectors.run_current_stage(run)
    if chart_stage is not None and not chart_stage.tracked_run_id:
        chart_stage = next((s for s in reversed(stages) if s.tracked_run_id), None)
    can_launch = can(request.user, "runs.launch")
    checkpoints = {s.pk: selectors.stage_checkpoints(s) for s in stages}
    # The chart marks the steps that have a checkpoint on disk; a marker opens the fork form.
    markers = [{"step": c.step, "label": f"checkpoint {c.step}",
                "url": f"{reverse('pipelines:stage_fork', args=[run.pk, chart_stage.pk])}?step={c.step}" if can_launch else ""}
               for c in checkpoints.get(chart_stage.pk if chart_stage else None, []) if c.on_disk]
    fork_parent, fork_step = selectors.fork_parent(stages[0]) if len(stages) == 1 else (None, None)
    return render(request, "pipelines/run_detail.html", {
        "checkpoints": checkpoints, "step_markers": json.dumps(markers) if markers else "",
        "fork_parent": fork_parent, "fork_step": fork_step,
        "run": run, "stages": stages, "nodes": nodes, "edges": edges,
        "log_tails": {s.pk: selectors.log_tail(s.log_path) for s in stages},
        "configs": {s.pk: json.dumps(s.config, indent=2, sort_keys=True) for s in stages},
        "outputs": {s.pk: json.dumps(s.outputs, indent=2, sort_keys=True) if s.outputs else "" for s in stages},
        "code_sandboxes": {s.pk: selectors.stage_code_sandbox(s) for s in stages},
        "can_launch": can_launch,
        "chart_stage": chart_stage,
    })


@require_action("runs.view")
def stage_log(request, run_id: int, stage_id: int):
    """The tail of a stage's log as plain text (the page puts it in with textContent)."""
    stage = get_object_or_404(Stage, pk=stage_id, run_id=run_id)
    return HttpResponse(selectors.log_tail(stage.log_path), content_type="text/plain; charset=utf-8")


@require_action("runs.view")
def run_status_json(request, run_id: int):
    run = get_object_or_404(PipelineRun, pk=run_id)
    return JsonResponse(run.status_payload())


@require_action("runs.launch")
def run_new(request):
    key = request.GET.get("template") or request.POST.get("template") or "r1_zero"
    kinds = [k.strip() for k in (request.GET.get("kinds") or request.POST.get("kinds") or "grpo").split(",") if k.strip()]
    if key != "custom" and key not in TEMPLATES:
        key = "r1_zero"
    template = get_pipeline_template(key, custom_kinds=kinds)
    if request.method == "POST":
        form = LaunchForm(request.POST, template=template)
        if form.is_valid():
            run = services.pipeline_run_create(
                name=form.cleaned_data["name"], template_key=key, plans=form.plans, user=request.user,
                base_model=form.cleaned_data["base_model"], prompt_set=form.cleaned_data.get("prompt_set"))
            services.pipeline_run_launch(run=run, user=request.user)
            messages.success(request, f"Launched {run.name}: its first stage is queued on the gpu queue.")
            return redirect("pipelines:detail", run_id=run.pk)
    else:
        form = LaunchForm(template=template, initial={"name": f"{template.label} {uuid.uuid4().hex[:4]}"})
    return render(request, "pipelines/run_new.html", {
        "form": form, "template": template, "templates": list(TEMPLATES.values()), "custom_kinds": ",".join(kinds),
        "known_kinds": sorted(known_kinds() - {"make_base"}),
    })


@require_action("runs.launch")
def stage_fork(request, run_id: int, stage_id: int):
    """Fork here: the launch form for a new run that continues this stage from its checkpoint
    ?step=k with an edited config (prefilled with the parent's, the differences marked)."""
    parent = get_object_or_404(Stage.objects.select_related("run", "tracked_run"), pk=stage_id, run_id=run_id)
    raw = request.POST.get("step") if request.method == "POST" else request.GET.get("step")
    on_disk = [c.step for c in selectors.stage_checkpoints(parent) if c.on_disk]
    step = int(raw) if raw and raw.isdigit() else None
    if step not in on_disk:
        have = ", ".join(map(str, on_disk)) or "none"
        messages.error(request, f"Stage {parent.name!r} has no checkpoint of step {raw or '?'} on disk (deleted by rotation, "
                                f"or never written); steps that can be forked: {have}.")
        return redirect("pipelines:detail", run_id=run_id)
    form = ForkForm(request.POST or None, parent=parent, step=step)
    if request.method == "POST" and form.is_valid():
        try:
            run = services.stage_fork(parent=parent, step=step, plan=form.plan, name=form.cleaned_data["name"],
                                      user=request.user)
        except state_machine.PipelineValidationError as exc:  # e.g. the checkpoint went meanwhile
            form.add_error(None, "; ".join(exc.errors.values()))
        else:
            messages.success(request, f"Launched {run.name}: {parent.name} continues from its checkpoint of step {step}.")
            return redirect("pipelines:detail", run_id=run.pk)
    return render(request, "pipelines/fork_new.html", {
        "form": form, "parent": parent, "step": step, "diffs": form.diffs(), "parent_values": form.parent_values,
        "data_ref": (parent.resolved_inputs or {}).get("train_data") or {},
        "model_ref": (parent.resolved_inputs or {}).get("model") or {},
    })


def _stage_action(request, run_id: int, stage_id: int, action):
    stage = get_object_or_404(Stage.objects.select_related("run"), pk=stage_id, run_id=run_id)
    try:
        action(stage=stage, user=request.user)
    except state_machine.StageTransitionError as exc:
        messages.error(request, str(exc))
    return redirect("pipelines:detail", run_id=run_id)


@require_action("runs.launch")
@require_POST
def stage_cancel(request, run_id: int, stage_id: int):
    return _stage_action(request, run_id, stage_id, services.stage_cancel)


@require_action("runs.launch")
@require_POST
def stage_resume(request, run_id: int, stage_id: int):
    return _stage_action(request, run_id, stage_id, services.stage_resume)


@require_action("runs.launch")
@require_POST
def stage_retry(request, run_id: int, stage_id: int):
    return _stage_action(request, run_id, stage_id, services.stage_retry)


@require_action("runs.launch")
@require_POST
def run_cancel(request, run_id: int):
    run = get_object_or_404(PipelineRun, pk=run_id)
    try:
        services.pipeline_run_cancel(run=run, user=request.user)
    except state_machine.StageTransitionError as exc:
        messages.error(request, str(exc))
    return redirect("pipelines:detail", run_id=run_id)


@require_action("workers.view")
def workers(request):
    infos, error = selectors.workers_overview()
    running = Stage.objects.select_related("run").filter(status__in=[Stage.Status.RUNNING, Stage.Status.QUEUED])
    return render(request, "pipelines/workers.html", {"workers": infos, "error": error, "running": running,
                                                      "heartbeat_timeout": settings.R1LAB_HEARTBEAT_TIMEOUT_S})


@require_action("runs.view")
def models_page(request):
    form = None
    if can(request.user, "models.manage"):
        form = BaseModelForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                model = services.base_model_register(**form.cleaned_data)
            except state_machine.PipelineValidationError as exc:
                for field, msg in exc.errors.items():
                    form.add_error(field if field in form.fields else None, msg)
            else:
                messages.success(request, f"Registered {model.name}: {selectors.base_model_summary(model)}.")
                return redirect(f"{reverse('pipelines:models')}?shown={model.pk}#model-{model.pk}")
    elif request.method == "POST":
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("your role may not models.manage")
    return render(request, "pipelines/models.html", {
        "base_models": selectors.base_models_for_picker(), "prompt_sets": selectors.prompt_sets_for_picker(),
        "form": form, "shown": request.GET.get("shown", ""), "can_manage": form is not None})


@require_action("models.manage")
@require_POST
def base_model_check(request, model_id: int):
    """Inspect a registered model's folder again (the demo's base once its stage built it, a folder
    that changed on disk)."""
    model = get_object_or_404(BaseModel, pk=model_id)
    try:
        services.base_model_check(base_model=model)
    except state_machine.PipelineValidationError as exc:
        messages.error(request, f"{model.name}: " + "; ".join(exc.errors.values()))
    else:
        messages.success(request, f"Checked {model.name}: {selectors.base_model_summary(model)}.")
    return redirect(f"{reverse('pipelines:models')}?shown={model.pk}#model-{model.pk}")


@require_action("models.manage")
def prompt_set_import(request):
    """Upload: the file is staged and read (detected format and mapping), then its preview page."""
    form = PromptImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        staged = prompt_import.upload_stage(data=upload.read(), filename=upload.name, name=form.cleaned_data["name"],
                                            kind=form.cleaned_data["kind"], eval_fraction=form.cleaned_data["eval_fraction"])
        return redirect("pipelines:prompt_import_staged", token=staged.token)
    return render(request, "pipelines/prompt_import.html", {"form": form})


@require_action("models.manage")
def prompt_import_staged(request, token: str):
    """A staged upload: its progress while a large file is checked, then the preview (detected
    format, editable column mapping, first rows with their gold answers, row errors); POST
    `action=remap` re-reads it with the user's mapping, a plain POST imports it. All or nothing."""
    staged = prompt_import.upload_load(token)
    if staged is None:
        messages.error(request, "that upload expired; upload the file again")
        return redirect("pipelines:prompt_import")
    mapping_form = None
    if request.method == "POST" and staged.checking:
        messages.error(request, "the file is still being checked")
    elif request.method == "POST" and request.POST.get("action") == "remap":
        mapping_form = MappingForm(request.POST, target=prompt_import.TARGET, columns=staged.file_info.get("columns", []),
                                   splits=staged.file_info.get("splits") or None)
        if mapping_form.is_valid():
            prompt_import.upload_remap(staged=staged, mapping=mapping_form.mapping())
            return redirect("pipelines:prompt_import_staged", token=token)
    elif request.method == "POST":
        if not staged.ok:
            messages.error(request, "nothing was imported: the file has row errors")
            return redirect("pipelines:prompt_import_staged", token=token)
        try:
            ps = services.prompt_set_import(name=staged.name, kind=staged.kind, rows=prompt_import.upload_rows(staged),
                                            eval_fraction=staged.eval_fraction, user=request.user,
                                            source_name=staged.source_name)
        except state_machine.PipelineValidationError as exc:
            messages.error(request, "; ".join(exc.errors.values()))
            return redirect("pipelines:prompt_import_staged", token=token)
        prompt_import.upload_discard(staged)
        messages.success(request, f"Imported {ps.name}: {ps.train_count} train and {ps.eval_count} eval prompts.")
        return redirect("pipelines:models")
    mapping = Mapping.from_dict(staged.mapping)
    if mapping_form is None and mapping is not None and not staged.checking:
        mapping_form = MappingForm.for_mapping(mapping, target=prompt_import.TARGET, file_info=staged.file_info)
    return render(request, "pipelines/prompt_import.html", {"staged": staged, "mapping_form": mapping_form})


@require_action("models.manage")
def prompt_import_progress(request, token: str):
    staged = prompt_import.upload_load(token)
    if staged is None:
        raise Http404("no such upload")
    return JsonResponse(staged.progress())
