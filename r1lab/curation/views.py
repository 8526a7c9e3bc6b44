"""Curation pages. Thin: forms validate, services write, selectors read."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.decorators.http import require_POST

from r1lab.accounts.permissions import can, require_action
from r1lab.curation import formats, forms
from r1lab.curation import steps as step_rules
from r1lab.curation.checks import live_checks
from r1lab.curation.diff import diff_stats, text_diff
from r1lab.curation.models import CurationProject, DatasetVersion, Example, ImportJob, Revision, default_label_schema
from r1lab.curation.selectors import agreement as agreement_reads
from r1lab.curation.selectors import examples as example_reads
from r1lab.curation.selectors import projects as project_reads
from r1lab.curation.selectors import queue as queue_reads
from r1lab.curation.selectors import search
from r1lab.curation.selectors import versions as version_reads
from r1lab.curation.services import examples, import_jobs, projects, version_exports, versions
from r1lab.curation.services.errors import EditConflict
from r1lab.curation.services.step_labels import StepValues
from r1lab.dataset_formats import Mapping
from r1lab.dataset_formats.forms import MappingForm

PAGE_SIZE = 50
COUNT_CAP = 1000


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows: "1,000+ matches" instead of counting 90k (full-text search
    for a common word would spend most of its time counting). Pages past the cap are not offered."""

    capped = False

    @cached_property
    def count(self) -> int:
        n = self.object_list[: COUNT_CAP + 1].count()
        self.capped = n > COUNT_CAP
        return min(n, COUNT_CAP)


class MatchesPaginator(Paginator):
    """Pages of a search.ExampleMatches: counts exactly up to search.EXACT_UP_TO ("2000+" or "about N" beyond)."""

    @property
    def capped(self) -> bool:
        self.count  # noqa: B018 — the count decides it
        return self.object_list.capped

    @property
    def estimate(self) -> int | None:
        """The planner's estimate of the matches when they were too many to count (see ExampleMatches)."""
        self.count  # noqa: B018
        return self.object_list.estimate


def _errors(exc: ValidationError) -> list[str]:
    return list(exc.messages)


# --- projects ----------------------------------------------------------------------------------
@require_action("curation.view")
def index(request):
    return render(request, "curation/index.html", {
        "projects": project_reads.project_list(),
        "my_queue": queue_reads.queue_projects(user=request.user) if can(request.user, "curation.annotate") else [],
    })


@require_action("curation.manage")
def project_new(request):
    form = forms.ProjectForm(request.POST or None, initial={"label_schema": forms.schema_as_text(default_label_schema())})
    if request.method == "POST" and form.is_valid():
        try:
            project = projects.project_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect("curation:project", slug=project.slug)
    return render(request, "curation/project_form.html", {"form": form, "title": "New curation project"})


@require_action("curation.view")
def project_detail(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    return render(request, "curation/project_detail.html", {
        "project": project, "counts": project_reads.project_status_counts(project=project),
        "annotators": project_reads.project_annotators(project=project), "candidates": project_reads.annotator_candidates(),
        "versions": version_reads.project_versions(project=project, limit=10),
        "imports": project_reads.project_recent_imports(project=project, limit=5),
        "my_counts": queue_reads.queue_counts(user=request.user, project=project),
    })


@require_action("curation.manage")
def project_settings(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    initial = {"description": project.description, "target_language": project.target_language, "overlap": project.overlap,
               "label_schema": forms.schema_as_text(project.label_schema), "rs_one_person_freeze": project.rs_one_person_freeze,
               "step_split": project.step_split, "license": project.license}
    form = forms.ProjectSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            projects.project_update(project=project, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("curation:project", slug=project.slug)
    return render(request, "curation/project_form.html", {"form": form, "title": f"Settings · {project.name}", "project": project})


@require_action("curation.manage")
@require_POST
def project_annotators(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    users = project_reads.annotator_users(ids=[int(i) for i in request.POST.getlist("annotators") if i.isdigit()])
    created = projects.project_set_annotators(project=project, users=users)
    messages.success(request, f"{users.count()} annotator(s); {created} new assignment(s) made (overlap {project.overlap}).")
    return redirect("curation:project", slug=project.slug)


# --- import ---------------------------------------------------------------------------------------
@require_action("curation.manage")
def import_new(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    form = forms.ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = import_jobs.import_job_create(project=project, user=request.user, filename=upload.name, data=upload.read())
        except ValidationError as exc:
            form.add_error("file", exc)
        else:
            return redirect("curation:import", job_id=job.pk)
    return render(request, "curation/import_new.html", {"project": project, "form": form})


@require_action("curation.manage")
def import_detail(request, job_id: int):
    job = get_object_or_404(ImportJob.objects.select_related("project"), pk=job_id)
    if request.method == "POST":
        try:
            import_jobs.import_job_start(job=job)
        except ValidationError as exc:
            messages.error(request, " ".join(_errors(exc)))
        return redirect("curation:import", job_id=job.pk)
    return _import_detail_page(request, job, mapping_form=None)


def _import_detail_page(request, job: ImportJob, *, mapping_form: MappingForm | None):
    if mapping_form is None and job.mapping and job.status in (ImportJob.Status.READY, ImportJob.Status.INVALID):
        mapping_form = MappingForm.for_mapping(Mapping.from_dict(job.mapping), target=formats.TARGET, file_info=job.file_info)
    return render(request, "curation/import_detail.html", {
        "job": job, "project": job.project, "mapping_form": mapping_form,
        "format_label": Mapping.from_dict(job.mapping).label if job.mapping else "",
    })


@require_action("curation.manage")
@require_POST
def import_mapping(request, job_id: int):
    """Re-run the preview of a not yet started import with the user's column mapping."""
    job = get_object_or_404(ImportJob.objects.select_related("project"), pk=job_id)
    form = MappingForm(request.POST, target=formats.TARGET, columns=job.file_info.get("columns", []),
                       splits=job.file_info.get("splits") or None)
    if not form.is_valid():
        return _import_detail_page(request, job, mapping_form=form)
    try:
        import_jobs.import_job_remap(job=job, mapping=form.mapping())
    except ValidationError as exc:
        messages.error(request, " ".join(_errors(exc)))
    return redirect("curation:import", job_id=job.pk)


@require_action("curation.manage")
def import_progress(request, job_id: int):
    job = get_object_or_404(ImportJob, pk=job_id)
    return JsonResponse({"status": job.status, "phase": job.phase, "done": job.done_rows, "total": job.total_rows, "message": job.message})


# --- browse, search, bulk approve --------------------------------------------------------------------
@require_action("curation.view")
def example_list(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    f = search.ExampleFilter.from_params(request.GET)
    page = MatchesPaginator(search.examples_matching(project=project, f=f), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "curation/example_list.html", {
        "project": project, "f": f, "page": page, "querystring": f.querystring_items(),
        "status_choices": forms.STATUS_CHOICES, "source_choices": forms.SOURCE_CHOICES,
        "label_keys": [q for q in project.label_schema if q["type"] != "text"],
        "full_text": search.full_text_supported(),
    })


@require_action("curation.review")
@require_POST
def example_bulk_approve(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    f = search.ExampleFilter.from_params(request.POST)
    result = examples.examples_bulk_approve(examples=search.examples_filtered(project=project, f=f), user=request.user)
    messages.success(request, f"Approved {result.approved} submitted example(s) of this selection.")
    if result.own:
        messages.warning(request, f"{result.own} submitted example(s) of this selection not approved: you wrote or last edited them, "
                                  "so another reviewer must approve them (four eyes).")
    query = "&".join(f"{k}={v}" for k, v in f.querystring_items())
    return redirect(reverse("curation:examples", kwargs={"slug": slug}) + (f"?{query}" if query else ""))


@require_action("curation.view")
def agreement(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    return render(request, "curation/agreement.html", {
        "project": project, "agreement": agreement_reads.project_agreement(project=project),
        "steps": agreement_reads.step_agreement(project=project), "edits": agreement_reads.edit_agreement(project=project),
    })


# --- versions -----------------------------------------------------------------------------------------
@require_action("curation.view")
def version_list(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    return render(request, "curation/version_list.html", {
        "project": project, "versions": version_reads.project_versions(project=project),
        "approved": project_reads.project_approved_count(project=project),
    })


@require_action("curation.manage")
@require_POST
def version_freeze(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    try:
        result = versions.dataset_version_freeze(project=project, user=request.user, note=request.POST.get("note", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(_errors(exc)))
        return redirect("curation:versions", slug=slug)
    if result.created:
        messages.success(request, f"Version {result.version.number} frozen ({result.version.example_count} examples).")
    else:
        messages.info(request, f"Nothing changed since version {result.version.number}: no new version.")
    return redirect("curation:version", pk=result.version.pk)


@require_action("curation.view")
def version_detail(request, pk: int):
    version = get_object_or_404(DatasetVersion.objects.select_related("project", "created_by"), pk=pk)
    return render(request, "curation/version_detail.html", {
        "version": version, "project": version.project, "uses": version_reads.dataset_version_uses(version=version),
        "items": version_reads.dataset_version_items_preview(version=version, limit=50),
        "changelog": {k: version.changelog.get(k, []) for k in ("added", "removed", "changed")},
    })


@require_action("curation.view")
def version_download(request, pk: int):
    version = get_object_or_404(DatasetVersion.objects.select_related("project"), pk=pk)
    path = versions.dataset_version_export_path(version=version)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type="application/jsonl")


EXPORTS = {  # kind: (writer, content type) — services.version_exports
    "stepwise": (version_exports.dataset_version_stepwise_path, "application/jsonl"),
    "hf": (version_exports.dataset_version_hf_zip, "application/zip"),
    "argilla": (version_exports.dataset_version_argilla_zip, "application/zip"),
}


@require_action("curation.view")
def version_export(request, pk: int, kind: str):
    """The version as process-supervision JSONL, a Hugging Face datasets folder or Argilla records (issue 18)."""
    if kind not in EXPORTS:
        raise Http404("no such export")
    version = get_object_or_404(DatasetVersion.objects.select_related("project", "created_by"), pk=pk)
    writer, content_type = EXPORTS[kind]
    path = writer(version=version)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type=content_type)


# --- the annotator's queue and editor ---------------------------------------------------------------------
@require_action("curation.annotate")
def queue(request):
    return render(request, "curation/queue.html", {"rows": queue_reads.queue_projects(user=request.user)})


@require_action("curation.annotate")
def queue_next(request, slug: str):
    project = get_object_or_404(CurationProject, slug=slug)
    example = queue_reads.queue_next(user=request.user, project=project)
    if example is None:
        messages.success(request, f"Your queue in {project.name} is empty: nothing left to do.")
        return redirect("curation:queue")
    return redirect("curation:editor", pk=example.pk)


@require_action("curation.annotate")
def neighbour(request, pk: int, direction: str):
    example = get_object_or_404(Example, pk=pk)
    target = queue_reads.queue_neighbour(user=request.user, example=example, direction=1 if direction == "next" else -1)
    if target is None:
        messages.info(request, "No more examples in that direction in your queue.")
        target = example.pk
    return redirect("curation:editor", pk=target)


def _label_values(request, schema) -> dict:
    return {q["key"]: request.POST.get(f"label_{q['key']}", "") for q in schema}


@require_action("curation.view")
def editor(request, pk: int):
    example = example_reads.editor_example(pk=pk, user=request.user)
    if example is None:
        raise Http404("No such example.")
    project = example.project
    can_edit = examples.example_can_edit(user=request.user, example=example)
    form_errors: list[str] = []
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("You may not edit this example.")
        form = forms.EditorForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            submit = data["action"] == "submit"
            try:
                saved = examples.editor_save(
                    example=example, user=request.user, based_on=data["based_on"],
                    changes={"reasoning": data["reasoning"], "summary": data["summary"]},
                    label_values=_label_values(request, project.label_schema), submit=submit,
                    step_values=StepValues.from_post(request.POST),
                )
            except EditConflict as conflict:
                return _conflict(request, conflict)
            except ValidationError as exc:
                form_errors = _errors(exc)
            else:
                if submit:
                    messages.success(request, f"Example {saved.pk} submitted ({saved.status}).")
                    return redirect("curation:queue_next", slug=project.slug)
                messages.success(request, f"Saved: version {saved.version}.")
                return redirect("curation:editor", pk=saved.pk)
        else:
            form_errors = [f"{k}: {' '.join(v)}" for k, v in form.errors.items()]
    can_review = can(request.user, "curation.review") and example.status == Example.Status.SUBMITTED
    values = example.mine_label or {}
    if request.method == "POST":  # keep what the annotator typed/chose on an error
        values = {q["key"]: request.POST.get(f"label_{q['key']}", "") for q in project.label_schema}
    questions = [{**q, "value": values.get(q["key"], ""), "steps": list(range(q["min"], q["max"] + 1)) if q["type"] == "scale" else []}
                 for q in project.label_schema]
    steps = example_reads.editor_steps(example=example, entries=example.mine_steps)
    if request.method == "POST" and request.POST.get("steps_digest") == steps.split.digest:  # keep what was chosen on an error
        for row in steps.rows:
            row["label"] = request.POST.get(f"step_{row['index']}", "")
            row["note"] = request.POST.get(f"step_note_{row['index']}", "")
    return render(request, "curation/editor.html", {
        "example": example, "project": project, "can_edit": can_edit, "questions": questions,
        "reasoning": request.POST.get("reasoning", example.reasoning) if form_errors else example.reasoning,
        "summary": request.POST.get("summary", example.summary) if form_errors else example.summary,
        "based_on": example.version, "form_errors": form_errors,
        "counts": {"done": example.mine_done or 0, "remaining": example.mine_remaining or 0},
        "revision_count": example.version,
        "events": example_reads.example_status_events(example=example, limit=5),
        "can_review": can_review,
        "approve_refusal": example_reads.approval_refusal(example=example, user=request.user) if can_review else None,
        "steps": steps, "step_labels": step_rules.LABELS,
        # Reviewers see every annotator's step verdicts; annotators label blind (as with labels).
        "step_reviews": (example_reads.example_step_labels(example=example, split=steps.split)
                         if can(request.user, "curation.review") and steps.rows else None),
    }, status=400 if form_errors else 200)


def _conflict(request, conflict: EditConflict):
    current = conflict.example
    fields = []
    for name in ("reasoning", "summary"):
        mine = conflict.mine.get(name, getattr(current, name))
        theirs = getattr(current, name)
        d = text_diff(theirs, mine)
        fields.append({"name": name, "mine": mine, "theirs": theirs, "diff": d.segments, "level": d.level, "same": mine == theirs})
    revisions = example_reads.example_revisions_after(example=current, number=conflict.based_on)
    return render(request, "curation/conflict.html", {
        "example": current, "project": current.project, "fields": fields, "based_on": conflict.based_on,
        "revisions": revisions, "action": request.POST.get("action", "save"),
        "label_values": {k: v for k, v in request.POST.items() if k.startswith(("label_", "step"))},
    }, status=409)


@require_action("curation.view")  # computes, writes nothing: the read-only editor shows highlights too
def checks(request, pk: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    example = get_object_or_404(Example.objects.select_related("project"), pk=pk)
    form = forms.ChecksForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    return JsonResponse(live_checks(
        reasoning=form.cleaned_data["reasoning"], summary=form.cleaned_data["summary"],
        gold_answer=example.gold_answer, language=example.language or example.project.target_language,
    ))


@require_action("curation.view")
def history(request, pk: int):
    example = get_object_or_404(Example.objects.select_related("project"), pk=pk)
    revisions = example_reads.example_revisions(example=example)
    if not revisions:
        raise Http404("no revisions")
    numbers = [r.number for r in revisions]

    def pick(name, default):
        try:
            value = int(request.GET.get(name, default))
        except ValueError:
            value = default
        return value if value in numbers else default

    b = pick("b", numbers[0])
    a = pick("a", numbers[1] if len(numbers) > 1 else numbers[0])
    by_number = {r.number: r for r in revisions}
    diffs = []
    for name in ("prompt", "reasoning", "summary", "gold_answer", "language"):
        d = text_diff(getattr(by_number[a], name), getattr(by_number[b], name))  # bounded: see diff.py
        diffs.append({"name": name, "segments": d.segments, "level": d.level, "stats": diff_stats(d.segments), "changed": d.changed})
    return render(request, "curation/history.html", {
        "example": example, "project": example.project, "revisions": revisions, "a": a, "b": b, "diffs": diffs,
        "can_edit": examples.example_can_edit(user=request.user, example=example),
    })


@require_action("curation.view")
def edits(request, pk: int):
    """The example's annotators' edits side by side against the original (issue 18)."""
    example = get_object_or_404(Example.objects.select_related("project"), pk=pk)
    versions = agreement_reads.example_edit_versions(example=example)
    original = versions["original"]
    if original is None:
        raise Http404("no revisions")
    columns = []
    for username, rev in versions["by"].items():
        fields = []
        for name in ("reasoning", "summary"):
            d = text_diff(getattr(original, name), getattr(rev, name))  # bounded: see diff.py
            fields.append({"name": name, "segments": d.segments, "level": d.level, "stats": diff_stats(d.segments), "changed": d.changed})
        columns.append({"username": username, "revision": rev, "fields": fields, "from_original": versions["from_original"][username]})
    return render(request, "curation/edits.html", {
        "example": example, "project": example.project, "original": original, "columns": columns, "pairs": versions["pairs"],
    })


@require_action("curation.annotate")
@require_POST
def restore(request, pk: int):
    example = get_object_or_404(Example, pk=pk)
    if not examples.example_can_edit(user=request.user, example=example):
        raise PermissionDenied("You may not edit this example.")
    try:
        number, based_on = int(request.POST["number"]), int(request.POST["based_on"])
        restored = examples.revision_restore(example=example, number=number, user=request.user, based_on=based_on)
    except (KeyError, ValueError, Revision.DoesNotExist):
        messages.error(request, "Pick a revision to restore.")
        return redirect("curation:history", pk=pk)
    except EditConflict as conflict:
        return _conflict(request, conflict)
    messages.success(request, f"Restored revision {number} as version {restored.version}.")
    return redirect("curation:editor", pk=pk)


# --- review -------------------------------------------------------------------------------------------
@require_action("curation.review")
def review_queue(request):
    all_projects = project_reads.project_list()
    slug = request.GET.get("project", "")
    project = next((p for p in all_projects if p.slug == slug), None)
    page = CappedPaginator(example_reads.review_queue_rows(project=project), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "curation/review.html", {"page": page, "projects": all_projects, "project": project})


@require_action("curation.review")
@require_POST
def review(request, pk: int):
    example = get_object_or_404(Example, pk=pk)
    form = forms.ReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or reject." if "decision" in form.errors else
                       " ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("curation:editor", pk=pk)
    try:
        example = examples.example_review(example=example, user=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, " ".join(_errors(exc)))
        return redirect("curation:editor", pk=pk)
    messages.success(request, f"Example {example.pk} {example.status}.")
    following = example_reads.review_queue_next_id(project=example.project)
    return redirect("curation:editor", pk=following) if following else redirect("curation:review")
