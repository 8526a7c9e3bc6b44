"""Writes of the rollout browser: a completion sent to curation (the workbench's writes are in rs/).

Curation owns its examples and versions: a completion sent to curation and a frozen kept set
both go through curation.services (example_create, example_submit, examples_bulk_approve,
dataset_version_freeze), so its invariants (revisions, checks, assignments, hashes) hold.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from r1lab.accounts.permissions import can
from r1lab.curation import services as curation
from r1lab.curation.models import CurationProject, Example
from r1lab.tracking.models import Sample

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
