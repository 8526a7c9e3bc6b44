"""Writes of the rejection-sampling workbench: load a stage's candidates, spot checks, freeze.

Curation owns its examples and versions: a frozen kept set goes through curation.services
(example_create, examples_bulk_approve, dataset_version_freeze), so its invariants hold.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from r1lab.accounts.permissions import can
from r1lab.curation import services as curation
from r1lab.curation.models import CurationProject, DatasetVersion, Example
from r1lab.rollouts.models import RSDataset, RSRow, SpotCheck, SpotCheckItem
from training_backend.stage import Out
from r1lab.rollouts.rs.selectors import latest_spot_check, rs_bad_row_ids, rs_freeze_refusal, rs_project, rs_project_slug, spot_check_summary

BATCH = 2000  # rows per bulk insert


# --- rejection-sampling datasets -------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValidationError(f"{path.name} line {n} is not JSON ({exc.msg}); nothing was loaded.") from None
    return out


def _stage_paths(stage) -> dict[str, Path]:
    outputs = stage.outputs or {}
    base = Path(stage.output_dir) if stage.output_dir else None

    def pick(key: str, name: str) -> Path | None:
        if outputs.get(key):
            return Path(outputs[key])
        return base / name if base else None

    return {"candidates": pick(Out.CANDIDATES, "candidates.jsonl"), "dataset": pick(Out.DATASET, "dataset.jsonl"),
            "funnel": pick(Out.FUNNEL, "funnel.json"), "removed": pick(Out.REMOVED, "removed.jsonl")}


def _reason_detail(reason: str, cand: dict, cfg) -> str:
    checks = cand.get("checks") or {}
    if cfg is None:
        return ""
    if reason == "format":
        return f"format reward {checks.get('format')}"
    if reason == "correct":
        return f"correctness {checks.get('correct')} (needs 1)"
    if reason == "language":
        v = checks.get("language")
        return f"language consistency {v:.2f} < {cfg.min_language_consistency}" if v is not None else ""
    if reason == "readability":
        from training_backend.rejection import readability_problem

        return readability_problem(cand["completion"], cfg.max_paragraph_chars, cfg.allow_code_in_cot) or ""
    if reason == "reward":
        return f"total reward {cand.get('reward', 0.0):.3f} < min_reward {cfg.min_reward}"
    if reason == "dedupe":
        return f"CoT {cfg.dedupe_ngram}-gram Jaccard ≥ {cfg.dedupe_threshold} to a kept sample of the prompt"
    if reason == "cap":
        return f"beyond keep_per_prompt = {cfg.keep_per_prompt}"
    return ""


def rs_dataset_load(*, stage, user) -> RSDataset:
    """Load a rejection-sampling stage's output folder: every candidate (candidates.jsonl) as a
    kept or removed row. Kept = in dataset.jsonl; the reason of a removed one comes from the
    stage's removed.jsonl, or, for a stage that predates it, from re-running the stage's own
    filters (training_backend.rejection.filter_candidates) on the candidates with its config.
    All or nothing; a dataset already frozen is not reloaded."""
    from training_backend.config import ConfigError, parse_config
    from training_backend.reflection import count_reflections
    from training_backend.rejection import Candidate, filter_candidates
    from training_backend.stage import checkpoint_step
    from training_backend.rewards.parsing import extract_answer, extract_think

    if stage.kind != "rejection_sampling":
        raise ValidationError(f"stage {stage.name!r} is a {stage.kind} stage, not rejection sampling")
    paths = _stage_paths(stage)
    if paths["candidates"] is None or not paths["candidates"].is_file():
        raise ValidationError("The stage has no candidates.jsonl yet (it has not finished sampling).")
    cands = _read_jsonl(paths["candidates"])
    try:
        cfg = parse_config("rejection_sampling", stage.config or {})
    except ConfigError:
        cfg = None
    kept_keys: set[tuple[str, int]] = set()
    if paths["dataset"] is not None and paths["dataset"].is_file():
        for r in _read_jsonl(paths["dataset"]):
            prov = r.get("provenance") or {}
            if r.get("source") == "rejection_sampling" and "prompt_id" in prov:
                kept_keys.add((str(prov["prompt_id"]), int(prov.get("sample", 0))))
    funnel = {}
    if paths["funnel"] is not None and paths["funnel"].is_file():
        funnel = json.loads(paths["funnel"].read_text())
    reasons: dict[tuple[str, int], str] = {}
    reasons_source = "stage"
    if paths["removed"] is not None and paths["removed"].is_file():
        for r in _read_jsonl(paths["removed"]):
            reasons[(str(r["prompt_id"]), int(r["sample"]))] = r["filter"]
    else:
        if cfg is None:
            raise ValidationError("The stage wrote no removed.jsonl and its config does not parse: the reasons cannot be recomputed.")
        reasons_source = "recomputed"
        objs = [Candidate(**{k: c[k] for k in ("row", "sample", "completion", "length", "truncated", "rewards", "reward", "checks") if k in c})
                for c in cands]
        kept, _ = filter_candidates(objs, cfg, reasons)
        if not kept_keys:
            kept_keys = {(str(c.row["id"]), c.sample) for c in kept}

    rows = []
    for c in cands:
        row = c.get("row") or {}
        key = (str(row.get("id")), int(c.get("sample", 0)))
        is_kept = key in kept_keys
        reason = "" if is_kept else reasons.get(key, "unknown")
        checks = c.get("checks") or {}
        completion = c.get("completion", "")
        lang = checks.get("language")
        correct = checks.get("correct")
        rows.append(RSRow(
            kept=is_kept, reason=reason, reason_detail=_reason_detail(reason, c, cfg)[:300] if reason else "",
            prompt_id=key[0], sample=key[1], prompt=row.get("prompt", ""), completion=completion,
            think=extract_think(completion) or "", answer=extract_answer(completion) or "", gold_answer=str(row.get("answer") or ""),
            rewards=c.get("rewards") or {}, reward=float(c.get("reward") or 0.0), checks=checks, length=int(c.get("length") or len(completion)),
            truncated=bool(c.get("truncated")), correct=None if correct is None else correct >= 1.0,
            reflection_count=count_reflections(completion), language_consistency=lang,
            language_mixed=None if lang is None else lang < 1.0,
        ))
    with transaction.atomic():
        old = RSDataset.objects.select_for_update().filter(stage=stage).first()
        if old is not None:
            if old.dataset_version_id is not None:
                raise ValidationError("This dataset was frozen into a dataset version; it is not reloaded.")
            old.delete()
        model_input = (stage.resolved_inputs or {}).get("model")
        model_input = model_input if isinstance(model_input, dict) else {}
        checkpoint = funnel.get("checkpoint") or model_input.get("path") or ""
        ck_step = funnel.get("checkpoint_step")
        if ck_step is None and checkpoint:
            ck_step = checkpoint_step(checkpoint)
        dataset = RSDataset.objects.create(
            stage=stage, output_dir=stage.output_dir, funnel=funnel, checkpoint=checkpoint, checkpoint_step=ck_step, model_input=model_input,
            reasons_source=reasons_source, kept_count=sum(r.kept for r in rows), removed_count=sum(not r.kept for r in rows),
            loaded_by=user,
        )
        for r in rows:
            r.dataset = dataset
        RSRow.objects.bulk_create(rows, batch_size=BATCH)
    return dataset


def spot_check_create(*, dataset: RSDataset, size: int, user, seed: int | None = None) -> SpotCheck:
    """A seeded random sample of `size` kept rows (all of them when fewer) for a human to judge."""
    if size < 1:
        raise ValidationError("A spot-check needs at least one row.")
    ids = list(RSRow.objects.filter(dataset=dataset, kept=True).order_by("id").values_list("id", flat=True))
    if not ids:
        raise ValidationError("There are no kept rows to spot-check.")
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    picked = random.Random(seed).sample(ids, min(size, len(ids)))
    with transaction.atomic():
        check = SpotCheck.objects.create(dataset=dataset, size=len(picked), seed=seed, created_by=user)
        SpotCheckItem.objects.bulk_create([SpotCheckItem(spot_check=check, row_id=rid, position=i) for i, rid in enumerate(picked)])
    return check


def spot_check_mark(*, item: SpotCheckItem, verdict: str, user, note: str = "") -> SpotCheckItem:
    if verdict not in ("good", "bad", ""):
        raise ValidationError("A verdict is good or bad.")
    item.verdict = verdict
    item.note = note[:500]
    item.judged_by = user if verdict else None
    item.judged_at = timezone.now() if verdict else None
    item.save(update_fields=["verdict", "note", "judged_by", "judged_at"])
    return item


def _freeze_project(*, dataset: RSDataset, user) -> CurationProject:
    project = rs_project(dataset=dataset)
    stage = dataset.stage
    slug = rs_project_slug(stage.pk)
    if project is None:
        project = curation.project_create(
            name=f"RS · {stage.run.name} · {stage.name} (stage {stage.pk})"[:200], slug=slug, user=user,
            description=f"Kept rows of rejection-sampling stage {stage.pk}, sampled from {dataset.checkpoint or 'an unknown checkpoint'}"
                        f" (step {dataset.checkpoint_step}).")
    return project


def rs_dataset_freeze(*, dataset: RSDataset, user, note: str = "") -> DatasetVersion:
    """The kept rows (minus those a spot-check marked bad) become approved examples of the stage's
    own curation project (source "rejection_sampling", provenance to the checkpoint and step in
    each source_ref), frozen into a DatasetVersion the SFT stage can pick. Needs a finished
    spot-check, judged by someone else than `user` (four eyes) unless the project allows one
    person to do both. All or nothing.

    The examples' author is nobody (the model wrote them; Revision.author is None): the freezer
    approves them, after the spot-check by another person. Only the examples this freeze makes
    are approved here: one of an earlier freeze that someone edited since went back to review
    (curation.services.example_save) and waits for a reviewer in curation."""
    if not can(user, "rollouts.freeze") or not can(user, "curation.review"):
        raise PermissionDenied("your role may not freeze datasets")
    summary = spot_check_summary(spot_check=latest_spot_check(dataset=dataset))
    if summary is None or not summary["complete"]:
        raise ValidationError("Finish a spot-check first: every row of the latest spot-check needs a verdict.")
    bad = rs_bad_row_ids(dataset=dataset)
    stage = dataset.stage
    with transaction.atomic():
        dataset = RSDataset.objects.select_for_update().get(pk=dataset.pk)
        refusal = rs_freeze_refusal(dataset=dataset, user=user)
        if refusal:
            raise curation.FourEyesError(refusal)
        project = _freeze_project(dataset=dataset, user=user)
        made = []
        for row in RSRow.objects.filter(dataset=dataset, kept=True, example_id__isnull=True).exclude(id__in=bad).order_by("id"):
            ref = {"kind": "rejection_sampling", "stage": stage.pk, "pipeline_run": stage.run_id, "rs_row": row.pk,
                   "prompt_id": row.prompt_id, "sample": row.sample, "checkpoint": dataset.checkpoint,
                   "checkpoint_step": dataset.checkpoint_step, "model_stage": dataset.model_input.get("stage_id"),
                   "reward": row.reward, "rewards": row.rewards}
            ex = curation.example_create(
                project=project, prompt=row.prompt, reasoning=row.think or row.completion, summary=row.answer,
                gold_answer=row.gold_answer, language=project.target_language or "en",
                source=Example.Source.REJECTION_SAMPLING, source_ref=ref, user=None, tags=["rejection_sampling"])
            curation.example_submit(example=ex, user=user)
            row.example_id = ex.pk
            made.append(row)
        RSRow.objects.bulk_update(made, ["example_id"], batch_size=BATCH)
        # Rows marked bad after an earlier freeze are taken out of the next version.
        bad_examples = RSRow.objects.filter(dataset=dataset, id__in=bad, example_id__isnull=False).values_list("example_id", flat=True)
        Example.objects.filter(project=project, id__in=list(bad_examples)).delete()
        curation.examples_bulk_approve(examples=Example.objects.filter(project=project, id__in=[r.example_id for r in made]),
                                       user=user, comment=f"rejection sampling, spot-check {summary['spot_check'].pk}")
        error = summary["error"]
        text = (f"rejection sampling stage {stage.pk} of {dataset.checkpoint or '?'} @ step {dataset.checkpoint_step}; "
                f"spot-check {summary['bad']}/{summary['judged']} bad")
        if error.estimate is not None:
            text += f" ({100 * error.estimate:.1f}%, 95% Wilson {100 * error.low:.1f}–{100 * error.high:.1f}%)"
        result = curation.dataset_version_freeze(project=project, user=user, note=(note + " · " if note else "") + text)
        dataset.curation_project = project
        dataset.dataset_version = result.version
        dataset.save(update_fields=["curation_project", "dataset_version"])
    return result.version
