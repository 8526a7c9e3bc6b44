"""The rejection-sampling workbench's tables. (Rollouts themselves are tracking.Sample rows.)

An `RSDataset` is one rejection-sampling stage's output, loaded from its output folder: every
scored candidate becomes an `RSRow`, kept or removed (with the filter that removed it). A
`SpotCheck` is a seeded random sample of kept rows that a human marks good or bad; the freeze
turns the kept rows (minus the ones marked bad) into a curation DatasetVersion.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class RSDataset(models.Model):
    stage = models.OneToOneField("pipelines.Stage", on_delete=models.CASCADE, related_name="rs_dataset")
    output_dir = models.CharField(max_length=1000)
    funnel = models.JSONField(default=dict)  # funnel.json as the stage wrote it
    # Provenance: the GRPO checkpoint the candidates were sampled from, and its training step.
    checkpoint = models.CharField(max_length=1000, blank=True)
    checkpoint_step = models.BigIntegerField(null=True, blank=True)
    model_input = models.JSONField(default=dict, blank=True)  # the stage's resolved model input (GRPO stage id, label, path)
    # "stage": removed.jsonl written by the stage; "recomputed": reasons re-derived by running
    # training_backend.rejection.filter_candidates on candidates.jsonl with the stage's config.
    reasons_source = models.CharField(max_length=20, default="stage")
    kept_count = models.PositiveIntegerField(default=0)
    removed_count = models.PositiveIntegerField(default=0)
    loaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    loaded_at = models.DateTimeField(auto_now_add=True)
    # Set by the freeze: the curation project holding the kept rows and the version made.
    curation_project = models.ForeignKey("curation.CurationProject", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dataset_version = models.ForeignKey("curation.DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"RS dataset of stage {self.stage_id}"


class RSRow(models.Model):
    """One scored candidate of a rejection-sampling stage; `reason` is "" for a kept row."""

    dataset = models.ForeignKey(RSDataset, on_delete=models.CASCADE, related_name="rows")
    kept = models.BooleanField()
    reason = models.CharField(max_length=20, blank=True)  # the filter that removed it (rejection.FILTERS)
    reason_detail = models.CharField(max_length=300, blank=True)
    prompt_id = models.CharField(max_length=200)
    sample = models.IntegerField()  # which of the prompt's n samples
    prompt = models.TextField()
    completion = models.TextField()
    think = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    gold_answer = models.TextField(blank=True)
    rewards = models.JSONField(default=dict)
    reward = models.FloatField()
    checks = models.JSONField(default=dict)  # format / correct / language, as the stage scored them
    length = models.IntegerField()
    truncated = models.BooleanField(default=False)
    correct = models.BooleanField(null=True)
    reflection_count = models.IntegerField(default=0)
    language_consistency = models.FloatField(null=True, blank=True)
    language_mixed = models.BooleanField(null=True)
    # The curation example this row became when the kept set was frozen.
    example_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["prompt_id", "sample"]
        constraints = [models.UniqueConstraint(fields=["dataset", "prompt_id", "sample"], name="rollouts_rsrow_unique")]
        indexes = [
            models.Index(fields=["dataset", "kept", "reason", "id"], name="rollouts_rsrow_kept"),
            models.Index(fields=["dataset", "reward"], name="rollouts_rsrow_reward"),
            models.Index(fields=["dataset", "length"], name="rollouts_rsrow_length"),
        ]


class SpotCheck(models.Model):
    """A seeded random sample of kept rows for a human to judge (good / bad)."""

    dataset = models.ForeignKey(RSDataset, on_delete=models.CASCADE, related_name="spot_checks")
    size = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class SpotCheckItem(models.Model):
    class Verdict(models.TextChoices):
        GOOD = "good"
        BAD = "bad"

    spot_check = models.ForeignKey(SpotCheck, on_delete=models.CASCADE, related_name="items")
    row = models.ForeignKey(RSRow, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    verdict = models.CharField(max_length=4, choices=Verdict.choices, blank=True)
    note = models.CharField(max_length=500, blank=True)
    judged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    judged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["spot_check", "position"]
        constraints = [models.UniqueConstraint(fields=["spot_check", "row"], name="rollouts_spot_unique_row")]
