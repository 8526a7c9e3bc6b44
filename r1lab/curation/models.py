"""Cold-start curation: projects, examples, per-annotator labels, revisions, review, dataset versions.

The text of an example (prompt, reasoning, summary, ...) is edited by several people; every text
save goes through `services.examples.example_save`, which is a conditional UPDATE on `version` (no lost
updates) and writes a `Revision`. Labels belong to one annotator each and never conflict.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from r1lab.curation import steps as step_rules

# Full-text search (PostgreSQL): `Example.search` is a stored tsvector of prompt + reasoning,
# kept up to date by a database trigger (tsvector_update_trigger, migration 0002) and indexed
# with GIN. Stored rather than an expression index because a query whose plan does not use the
# index (a common word, ORDER BY id LIMIT 50) would otherwise re-run to_tsvector on every row it
# reads (0.25 ms/row measured: 25 s over 100k rows). On SQLite the column stays empty and search
# falls back to icontains.
SEARCH_CONFIG = "english"


def default_label_schema() -> list[dict]:
    """The default label set; a project may replace it (keys are stable, questions are text)."""
    return [
        {"key": "quality", "question": "Overall quality", "type": "scale", "min": 1, "max": 5},
        {"key": "readability", "question": "Readability", "type": "scale", "min": 1, "max": 5},
        {"key": "language_consistent", "question": "Language consistent?", "type": "bool"},
        {"key": "correct", "question": "Answer correct?", "type": "bool"},
        {"key": "comment", "question": "Comment", "type": "text"},
    ]


class CurationProject(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    # The language the reasoning should be written in (ISO 639-1, e.g. "en", "zh").
    target_language = models.CharField(max_length=16, default="en")
    # How many annotators label each example.
    overlap = models.PositiveSmallIntegerField(default=1)
    label_schema = models.JSONField(default=default_label_schema)
    # Four eyes (issue 15): a rejection-sampled set is spot-checked by one person and frozen by
    # another. A small team may let one person do both for this project (off by default).
    rs_one_person_freeze = models.BooleanField(
        default=False, verbose_name="one person may spot-check and freeze a rejection-sampled set",
    )
    # How the reasoning is cut into steps for step labels (steps.py; issue 18).
    # A database default (here and on the licence): code from before these columns can still
    # create projects during a rolling deploy.
    step_split = models.CharField(max_length=12, choices=step_rules.RULE_CHOICES, default=step_rules.AUTO, db_default=step_rules.AUTO)
    # The data's licence, written into exported dataset cards (a Hugging Face licence id such as
    # cc-by-4.0 or apache-2.0); blank: "unknown".
    license = models.CharField(max_length=64, blank=True, default="", db_default="")
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="curation_projects")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ExampleManager(models.Manager):
    def get_queryset(self):
        # `search` (~2 kB of tsvector a row) is written by the trigger and read only inside SQL
        # (`search @@ query`): never fetched into Python. `.only(...)` replaces this as usual.
        return super().get_queryset().defer("search")


class Example(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        SUBMITTED = "submitted"
        APPROVED = "approved"
        REJECTED = "rejected"

    class Source(models.TextChoices):
        IMPORTED = "imported"
        ROLLOUT = "rollout"
        REJECTION_SAMPLING = "rejection_sampling"
        MANUAL = "manual"

    project = models.ForeignKey(CurationProject, on_delete=models.CASCADE, related_name="examples")
    prompt = models.TextField()
    reasoning = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    gold_answer = models.TextField(blank=True)
    language = models.CharField(max_length=16, default="en", db_index=True)
    source = models.CharField(max_length=24, choices=Source.choices, default=Source.MANUAL, db_index=True)
    source_ref = models.JSONField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True)
    # Optimistic concurrency: bumped by every text save; a save names the version it was based on.
    version = models.PositiveIntegerField(default=1)
    # Computed checks (refreshed on every text save; see checks.py).
    format_score = models.FloatField(default=0.0)
    accuracy = models.FloatField(null=True, blank=True)  # None: no gold answer
    language_score = models.FloatField(default=0.0)
    length = models.PositiveIntegerField(default=0, db_index=True)  # characters of the completion
    reflection_count = models.PositiveIntegerField(default=0)
    review_comment = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    search = SearchVectorField(null=True, editable=False)  # written by the trigger, never by Python

    objects = ExampleManager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "status", "id"], name="cur_ex_proj_status"),
            GinIndex(fields=["search"], name="cur_ex_search"),
        ]

    def __str__(self) -> str:
        return f"example {self.pk}"

    def completion(self) -> str:
        return assemble_completion(self.reasoning, self.summary)


def assemble_completion(reasoning: str, summary: str) -> str:
    return f"<think>{reasoning}</think><answer>{summary}</answer>"


# The text fields a revision snapshots (and a save may change).
TEXT_FIELDS = ("prompt", "reasoning", "summary", "gold_answer", "language")


class Revision(models.Model):
    """One saved state of an example's text: `number` is the example's version after the save."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True)
    changed_fields = models.JSONField(default=list)
    prompt = models.TextField()
    reasoning = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    gold_answer = models.TextField(blank=True)
    language = models.CharField(max_length=16, default="en")

    class Meta:
        ordering = ["example", "number"]
        constraints = [models.UniqueConstraint(fields=["example", "number"], name="cur_rev_unique_number")]


class Assignment(models.Model):
    """Example `example` is in `user`'s queue; `done` once they submitted it."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="curation_assignments")
    project = models.ForeignKey(CurationProject, on_delete=models.CASCADE, related_name="+")  # denormalized for the queue
    done = models.BooleanField(default=False)
    assigned_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["example", "user"], name="cur_assign_unique")]
        indexes = [models.Index(fields=["user", "project", "done", "example"], name="cur_assign_queue")]


class QueueCount(models.Model):
    """`user`'s done / remaining assignments in `project`: the queue and editor pages read this row
    instead of counting the assignments (100k of them for a busy annotator: ~60 ms a page).

    Kept in step transactionally by the services that change assignments (assignments_fill, the
    import, example_submit, example_review's reject), always in the same transaction as the change;
    `services.queue_counts.queue_counts_recompute` (`manage.py curation_recount`) rebuilds it from the
    assignments, e.g. after rows were changed outside the services (admin, shell, SQL).
    """

    project = models.ForeignKey(CurationProject, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    done = models.IntegerField(default=0)
    remaining = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="cur_queuecount_unique")]

    @property
    def total(self) -> int:
        return self.done + self.remaining


class Label(models.Model):
    """One annotator's answers to the project's label set for one example."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="curation_labels")
    values = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["example", "annotator"], name="cur_label_unique")]


class StepLabel(models.Model):
    """One annotator's verdicts on the steps of an example's reasoning (issue 18).

    `entries` is [{"h": step text hash, "label": "correct"|"incorrect"|"neutral"|"", "note": str}] in
    the order of the steps the annotator saw (revision `version`, split by `rule`). Keyed by the
    step's text, so a verdict follows its step through edits of the other steps (steps.map_entries).
    """

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="step_labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="curation_step_labels")
    rule = models.CharField(max_length=12)  # the rule that made the cut (steps.Split.used)
    version = models.PositiveIntegerField()  # the example's version whose reasoning was split
    entries = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["example", "annotator"], name="cur_steplabel_unique")]


class StatusEvent(models.Model):
    """The review trail: every status change, who made it, and the reviewer's comment."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="status_events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    from_status = models.CharField(max_length=12)
    to_status = models.CharField(max_length=12)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class ImportJob(models.Model):
    class Status(models.TextChoices):
        CHECKING = "checking"  # a large file being read and checked in the background (progress shown)
        INVALID = "invalid"  # parsed, has row errors: nothing will be imported
        READY = "ready"  # parsed, no errors: waiting for the user's confirmation
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    project = models.ForeignKey(CurationProject, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    filename = models.CharField(max_length=255)
    file_format = models.CharField(max_length=8)  # jsonl | csv | parquet | arrow (r1lab.dataset_formats.KINDS)
    path = models.CharField(max_length=500)  # the uploaded file, kept until the import ends (remapping reads it again)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    total_rows = models.PositiveIntegerField(default=0)
    done_rows = models.PositiveIntegerField(default=0)
    phase = models.CharField(max_length=40, blank=True)  # "checking", "writing"
    errors = models.JSONField(default=list)  # [{"line": n, "message": "..."}]
    preview = models.JSONField(default=list)  # the first rows, as parsed
    mapping = models.JSONField(default=dict)  # dataset_formats.Mapping.to_dict(): the format and column per field
    file_info = models.JSONField(default=dict)  # {"columns", "unit", "splits", "ignored"}: what the mapping form offers
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class DatasetVersion(models.Model):
    """An immutable, content-hashed freeze of a project's approved examples."""

    project = models.ForeignKey(CurationProject, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64, db_index=True)
    example_count = models.PositiveIntegerField()
    changelog = models.JSONField(default=dict)  # {"previous": n|None, "added": [...], "removed": [...], "changed": [...]}
    # What the exports' dataset card says, as it was at the freeze: the project's status counts,
    # label and step-label counts, and how it was made (services.versions.dataset_version_freeze).
    stats = models.JSONField(default=dict, db_default={})
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="cur_version_unique_number")]

    def __str__(self) -> str:
        return f"{self.project.slug} v{self.number} ({self.content_hash[:12]})"

    @property
    def label(self) -> str:
        return f"{self.project.name} v{self.number} · {self.example_count} examples · {self.content_hash[:12]}"


class DatasetVersionItem(models.Model):
    """One frozen row of a version: the text as it was when frozen, whatever happens to the example."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    example = models.ForeignKey(Example, null=True, on_delete=models.SET_NULL, related_name="+")
    example_ref = models.PositiveBigIntegerField()  # the example's id, kept if it is deleted
    row_hash = models.CharField(max_length=64)
    prompt = models.TextField()
    completion = models.TextField()
    gold_answer = models.TextField(blank=True)
    language = models.CharField(max_length=16)
    source = models.CharField(max_length=24)
    # Issue 18 (empty on rows frozen before it): the two parts of the completion, the example's
    # version (its revisions 1..n are the history the exports carry), every annotator's labels
    # ({username: values}) and the steps with their verdicts (services.versions._frozen_steps).
    # Database defaults on the new columns: code from before them can still freeze during a rolling deploy.
    reasoning = models.TextField(blank=True, default="", db_default="")
    summary = models.TextField(blank=True, default="", db_default="")
    example_version = models.PositiveIntegerField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True, db_default=[])
    labels = models.JSONField(default=dict, blank=True, db_default={})
    steps = models.JSONField(default=dict, blank=True, db_default={})

    class Meta:
        ordering = ["example_ref"]


class DatasetVersionUse(models.Model):
    """Lineage: a stage that trained on a version, and the checkpoint it produced."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="uses")
    consumer = models.CharField(max_length=300)  # e.g. "run 12 · stage sft_cold_start"
    checkpoint = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
