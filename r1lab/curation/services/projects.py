"""Curation projects, who annotates them, and the assignments that give each example its
`overlap` annotators."""
from __future__ import annotations

import uuid
from collections import Counter

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.text import slugify

from r1lab.curation import labels
from r1lab.curation import steps as step_rules
from r1lab.curation.models import Assignment, CurationProject, Example, default_label_schema
from r1lab.curation.services.bulk import rows_insert
from r1lab.curation.services.queue_counts import queue_counts_add


def project_create(
    *, name: str, user, description: str = "", target_language: str = "en", overlap: int = 1,
    label_schema: list[dict] | None = None, slug: str = "", rs_one_person_freeze: bool = False,
    step_split: str | None = None, license: str = "",
) -> CurationProject:
    """`step_split` None: auto."""
    schema = labels.schema_validate(label_schema if label_schema is not None else default_label_schema())
    if overlap < 1:
        raise ValidationError("Overlap must be at least 1.")
    step_split = step_split or step_rules.AUTO
    if step_split not in step_rules.RULES:
        raise ValidationError(f"The step rule must be one of {', '.join(step_rules.RULES)}.")
    slug = slugify(slug or name)[:80] or f"project-{uuid.uuid4().hex[:8]}"
    if CurationProject.objects.filter(Q(slug=slug) | Q(name=name)).exists():
        raise ValidationError(f"A project named {name!r} (or with slug {slug!r}) exists already.")
    return CurationProject.objects.create(
        name=name, slug=slug, description=description, target_language=target_language, overlap=overlap,
        label_schema=schema, created_by=user, rs_one_person_freeze=rs_one_person_freeze, step_split=step_split,
        license=license[:64],
    )


def project_update(
    *, project: CurationProject, description: str, target_language: str, overlap: int, label_schema,
    rs_one_person_freeze: bool | None = None, step_split: str | None = None, license: str | None = None,
) -> CurationProject:
    """`rs_one_person_freeze`, `step_split`, `license`: None leaves that setting as it is."""
    schema = labels.schema_validate(label_schema)
    if overlap < 1:
        raise ValidationError("Overlap must be at least 1.")
    if step_split is not None and step_split not in step_rules.RULES:
        raise ValidationError(f"The step rule must be one of {', '.join(step_rules.RULES)}.")
    project.description = description
    project.target_language = target_language
    project.overlap = overlap
    project.label_schema = schema
    fields = ["description", "target_language", "overlap", "label_schema"]
    for name, value in (("rs_one_person_freeze", rs_one_person_freeze), ("step_split", step_split), ("license", license)):
        if value is not None:
            setattr(project, name, value)
            fields.append(name)
    project.save(update_fields=fields)
    return project


def project_set_annotators(*, project: CurationProject, users) -> int:
    """Set who annotates the project, then fill every example up to `overlap` assignments."""
    with transaction.atomic():
        project.annotators.set(users)
        return assignments_fill(project=project)


def assignments_fill(*, project: CurationProject, example_ids: list[int] | None = None) -> int:
    """Give each example (of `example_ids`, else all) up to `overlap` annotators, least loaded first.

    Never removes an assignment (work may be in progress); returns how many were created.
    """
    annotator_ids = list(project.annotators.order_by("id").values_list("id", flat=True))
    if not annotator_ids:
        return 0
    load = Counter({uid: 0 for uid in annotator_ids})
    load.update(
        dict(Assignment.objects.filter(project=project, done=False, user_id__in=annotator_ids)
             .values_list("user_id").annotate(n=Count("id")).values_list("user_id", "n"))
    )
    examples = Example.objects.filter(project=project).exclude(status=Example.Status.APPROVED)
    if example_ids is not None:
        examples = examples.filter(id__in=example_ids)
    examples = examples.annotate(n=Count("assignments")).filter(n__lt=project.overlap)
    existing: dict[int, set[int]] = {}
    candidates = list(examples.values_list("id", flat=True).order_by("id"))
    for start in range(0, len(candidates), 10_000):
        chunk = candidates[start:start + 10_000]
        for ex_id, uid in Assignment.objects.filter(example_id__in=chunk).values_list("example_id", "user_id"):
            existing.setdefault(ex_id, set()).add(uid)
    new = []
    order = {uid: i for i, uid in enumerate(annotator_ids)}
    for ex_id in candidates:
        have = existing.get(ex_id, set())
        need = project.overlap - len(have)
        for uid in sorted((u for u in annotator_ids if u not in have), key=lambda u: (load[u], order[u]))[:max(need, 0)]:
            new.append(Assignment(example_id=ex_id, user_id=uid, project=project))
            load[uid] += 1
    now = timezone.now()
    rows_insert(model=Assignment, columns=["example_id", "user_id", "project_id", "done", "assigned_at"],
                rows=[(a.example_id, a.user_id, project.pk, False, now) for a in new])
    queue_counts_add(deltas={(project.pk, uid): (0, n) for uid, n in Counter(a.user_id for a in new).items()})
    return len(new)
