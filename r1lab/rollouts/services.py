"""Writes of the rollout browser: a completion sent to curation, a prompt-lineage class exported as
a prompt set (the workbench's writes are in rs/).

Curation owns its examples and versions: a completion sent to curation and a frozen kept set
both go through curation.services (example_create, example_submit, examples_bulk_approve,
dataset_version_freeze), so its invariants (revisions, checks, assignments, hashes) hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from r1lab.accounts.permissions import can
from r1lab.curation import services as curation
from r1lab.curation.models import CurationProject, Example
from r1lab.pipelines import services as pipelines_services
from r1lab.pipelines.models import PromptSet
from r1lab.rollouts import selectors
from r1lab.tracking import prompt_stats
from r1lab.tracking.models import PromptLineage, Run, Sample
from training_backend.data import DatasetError, read_prompt_jsonl

DRAFTS_SLUG = "rollout-drafts"
DRAFTS_NAME = "Rollout drafts"


# --- send a completion to curation ---------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    example: Example
    created: bool


def drafts_project(*, user) -> CurationProject:
    """The project that receives completions when the sender picks none (made on first use)."""
    project = CurationProject.objects.filter(slug=DRAFTS_SLUG).first()
    if project is not None:
        return project
    try:
        with transaction.atomic():
            return curation.project_create(
                name=DRAFTS_NAME, slug=DRAFTS_SLUG, user=user,
                description="Completions sent from the rollout browser as cold-start drafts.")
    except (ValidationError, IntegrityError):  # made by a concurrent first send
        return CurationProject.objects.get(slug=DRAFTS_SLUG)


def sample_send_to_curation(*, sample: Sample, user, project: CurationProject | None = None) -> SendResult:
    """The completion becomes a draft example (source "rollout", with where it came from).
    Sending the same completion to the same project again returns the existing draft."""
    if not can(user, "rollouts.send"):
        raise PermissionDenied("your role may not send completions to curation")
    from training_backend.rewards.parsing import extract_answer, extract_think

    project = project or drafts_project(user=user)
    existing = Example.objects.filter(project=project, source=Example.Source.ROLLOUT, source_ref__sample=sample.pk).first()
    if existing is not None:
        return SendResult(existing, False)
    think = sample.think or extract_think(sample.completion)
    answer = sample.answer or extract_answer(sample.completion) or ""
    gold = (sample.extra or {}).get("gold") or (sample.extra or {}).get("answer") or ""
    ref = {"kind": "rollout", "run": sample.run_id, "step": sample.step, "group": sample.group, "index": sample.index,
           "sample": sample.pk, "prompt_id": sample.prompt_id, "reward": sample.reward, "advantage": sample.advantage,
           "url": f"/rollouts/runs/{sample.run_id}/steps/{sample.step}/#s{sample.pk}"}
    example = curation.example_create(
        project=project, prompt=sample.prompt, reasoning=think if think is not None else sample.completion,
        summary=answer, gold_answer=str(gold), language=project.target_language or "en",
        source=Example.Source.ROLLOUT, source_ref=ref, user=user, tags=["rollout"],
    )
    return SendResult(example, True)


# --- prompt lineage: rebuild, export a class as a prompt set -------------------------------------


def prompt_lineage_rebuild(*, run: Run, user) -> int:
    """Fill the run's prompt-lineage rollup from its rollouts (a run logged before it existed)."""
    if not can(user, "runs.launch"):
        raise PermissionDenied("your role may not rebuild a run's prompt lineage")
    return prompt_stats.prompt_stats_rebuild(run_id=run.pk)


def _export_name(base: str) -> str:
    base = base[:190]
    name, n = base, 1
    while PromptSet.objects.filter(name=name).exists():
        n += 1
        name = f"{base} ({n})"
    return name


def prompt_class_export(*, run: Run, cls: str, user, name: str = "") -> PromptSet:
    """The run's prompts of one class (or the zero-variance ones) as a new prompt set, e.g. the
    never-solved ones as a hard set for the next stage. Rows are taken from the prompt set file the
    run trained on, by prompt id (answer, tests, type as they were); a prompt the file lacks, or
    every prompt of a run whose set is not known (an external run), comes from its logged prompt
    and gold answer. The set records the run, class and step it came from (the lineage edge)."""
    if not can(user, "models.manage"):
        raise PermissionDenied("your role may not create prompt sets")
    if cls not in (*prompt_stats.CLASSES, prompt_stats.ZERO_VARIANCE):
        raise ValidationError(f"unknown class {cls!r}")
    label = selectors.CLASS_LABELS[cls]
    qs = PromptLineage.objects.filter(run=run)
    qs = qs.filter(zero_var=True) if cls == prompt_stats.ZERO_VARIANCE else qs.filter(cls=cls)
    prompts = list(qs.order_by("prompt_id").values_list("prompt_id", "prompt", "gold", "last_step"))
    if not prompts:
        raise ValidationError(f"no prompt of this run is {label}: nothing to export")
    source = selectors.run_prompt_set(run=run)
    from_file: dict[str, dict] = {}
    if source is not None and Path(source.train_path).is_file():
        try:
            from_file = {r["id"]: r for r in read_prompt_jsonl(source.train_path)}
        except DatasetError:
            from_file = {}  # the set's file went bad since: fall back to the logged prompts
    rows = []
    for pid, prompt, gold, _ in prompts:
        row = from_file.get(pid)
        if row is not None:
            rows.append({k: v for k, v in row.items() if k != "_line"})
        else:
            rows.append({"id": pid, "prompt": prompt, "type": "math" if gold else "general", **({"answer": gold} if gold else {})})
    kinds = {r.get("type") for r in rows}
    kind = source.kind if source is not None else ("math" if kinds == {"math"} else "general")
    step = max(p[3] for p in prompts)
    with transaction.atomic():
        return pipelines_services.prompt_set_import(
            name=_export_name(name.strip() or f"{run.name} · {label} @ step {step}"), kind=kind, rows=rows,
            eval_fraction=0.0, user=user, source_name=f"run {run.pk}: {label} prompts",
            source_run=run, source_class=cls, source_step=step)
