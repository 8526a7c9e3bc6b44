from __future__ import annotations

from django.conf import settings
from django.db import models


class Run(models.Model):
    """A tracked run: what metrics and rollout samples attach to.

    A pipeline stage owns one (pipelines.Stage.tracked_run); an *external* run is created
    through `POST /api/v1/runs` by a trainer r1lab did not launch. Either way the trainer
    reports through the same ingest API with this run's token (stored hashed).
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        CRASHED = "crashed"  # its stage is known dead (worker lost, trainer crashed)

    name = models.CharField(max_length=200)
    project = models.CharField(max_length=100, default="default", db_index=True)
    config = models.JSONField(default=dict, blank=True)
    external = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="last time the trainer reported")
    finished_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)
    # Attempts: a resumed trainer rewinds the run (Rewind) and its values make the curve from
    # there on. `first_attempt` labels what was logged before any rewind; `attempt` is the one
    # logging now (a pipeline stage's attempt number, set by its worker; +1 per API rewind).
    first_attempt = models.PositiveIntegerField(default=1)
    attempt = models.PositiveIntegerField(default=1)
    # Key/value labels a trainer sets (MLflow run tags: `mlflow.user`, `mlflow.source.git.commit`,
    # the user's own). Apart from `config` on purpose: config holds the run's parameters, which
    # never change once logged, while a tag may be overwritten at any time.
    tags = models.JSONField(default=dict, blank=True)
    # A fork: this run continues `forked_from` after its step `forked_at_step` (a pipeline stage
    # forked from a checkpoint, pipelines.services.stage_fork). Its own curve starts at the next
    # step; the compare view draws the two from the shared step on.
    forked_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks")
    forked_at_step = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_stale(self) -> bool:
        """Running but silent for longer than R1LAB_STALE_AFTER_S: never 'running' forever."""
        if self.status != self.Status.RUNNING:
            return False
        from django.utils import timezone

        seen = self.last_seen_at or self.created_at
        return seen is not None and (timezone.now() - seen).total_seconds() > settings.R1LAB_STALE_AFTER_S

    @property
    def display_status(self) -> str:
        return "stale" if self.is_stale else self.status

    def status_payload(self) -> dict:
        return {
            "id": self.pk,
            "status": self.display_status,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class Series(models.Model):
    """One metric of one run (`reward`, `kl`, `rewards/accuracy/mean`, …).

    `rollup_upto`: the downsampling rollups (see Rollup) are complete for every bucket that
    ends at or before this step; -1 when none are built. Ingest lowers it when a late point
    lands inside a rolled-up range.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="series")
    key = models.CharField(max_length=200)
    rollup_upto = models.BigIntegerField(default=-1)
    # The series' summary, kept by ingest (store.refresh_summaries) and recomputed by a rewind: the
    # value at its highest step, and its extremes. The runs list filters and sorts on these
    # (`reward.last > 0.6`, run_query.py); NULL while the series has no point.
    last_step = models.BigIntegerField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="tracking_series_run_key")]
        # the runs query over 10,000 runs (`reward.last > 0.6`, sorted by it): a key's summaries by
        # run, read from the index alone (an index-only scan: no series row is visited)
        indexes = [models.Index(fields=["key", "run", "last_value", "min_value", "max_value"],
                                name="tracking_series_key_summary")]
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.key}"


class Point(models.Model):
    """One value of a series at a step. The primary key (series, step) is the unique index that
    makes retries idempotent (ON CONFLICT DO NOTHING) and serves every range query; no surrogate
    id, so a row is 4 columns and a bulk insert maintains one index."""

    pk = models.CompositePrimaryKey("series", "step")
    series = models.ForeignKey(Series, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    step = models.BigIntegerField()
    value = models.FloatField()
    ts = models.FloatField(help_text="wall time, seconds since the epoch")


class Rollup(models.Model):
    """Precomputed min/max/sum per bucket of 8**level steps (levels 1..ROLLUP_LEVELS), built lazily
    by the downsampling selector so that a 1,000,000-point series is read as a few thousand rows.
    Extremes keep their step and wall time: a one-step spike survives at every level."""

    pk = models.CompositePrimaryKey("series", "level", "bucket")
    series = models.ForeignKey(Series, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    level = models.SmallIntegerField()
    bucket = models.BigIntegerField()
    n = models.IntegerField()
    total = models.FloatField()
    min_v = models.FloatField()
    min_step = models.BigIntegerField()
    min_ts = models.FloatField()
    max_v = models.FloatField()
    max_step = models.BigIntegerField()
    max_ts = models.FloatField()


class Sample(models.Model):
    """One rollout (a completion of a prompt at a step), stored append-only for the rollout
    browser. Computed columns (reward, correct, reflection_count, language_mixed, zero_std_group,
    think/answer) are filled at ingest so that filters are plain indexed predicates."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="samples")
    step = models.BigIntegerField()
    group = models.IntegerField(default=0, help_text="GRPO group: the G completions of one prompt")
    index = models.IntegerField(default=0, help_text="position within the group")
    dedupe = models.BigIntegerField(help_text="identity for idempotent retries")
    prompt_id = models.CharField(max_length=200, blank=True)
    prompt = models.TextField()
    completion = models.TextField()
    think = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    rewards = models.JSONField(default=dict)
    reward = models.FloatField(help_text="total reward (the sample's `reward`, else the sum of `rewards`)")
    advantage = models.FloatField(null=True, blank=True)
    length = models.IntegerField(help_text="tokens when the trainer says, else characters")
    truncated = models.BooleanField(default=False)
    correct = models.BooleanField(null=True, help_text="rewards.accuracy >= 1; null without an accuracy reward")
    reflection_count = models.IntegerField(default=0)
    language_consistency = models.FloatField(null=True, blank=True)
    language_mixed = models.BooleanField(null=True)
    zero_std_group = models.BooleanField(null=True, help_text="every reward in its (step, group) is equal")
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step", "group", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "step", "dedupe"], name="tracking_sample_dedupe")]
        indexes = [
            models.Index(fields=["run", "step", "group", "index"], name="tracking_sample_step"),
            models.Index(fields=["run", "prompt_id", "step"], name="tracking_sample_prompt"),
            models.Index(fields=["run", "reward"], name="tracking_sample_reward"),
            models.Index(fields=["run", "length"], name="tracking_sample_length"),
            models.Index(fields=["run", "advantage"], name="tracking_sample_adv"),
            models.Index(fields=["run", "correct", "step"], name="tracking_sample_correct"),
            models.Index(fields=["run", "step"], name="tracking_sample_trunc", condition=models.Q(truncated=True)),
            models.Index(fields=["run", "step"], name="tracking_sample_refl", condition=models.Q(reflection_count__gt=0)),
            models.Index(fields=["run", "step"], name="tracking_sample_mixed", condition=models.Q(language_mixed=True)),
            models.Index(fields=["run", "step"], name="tracking_sample_zstd", condition=models.Q(zero_std_group=True)),
        ]


class PromptStepStat(models.Model):
    """One prompt's graded rollouts at one step of a run (every group of it at that step), and
    the prompt's class once that sampling is counted: the prompt-lineage rollup, kept by ingest
    (tracking.prompt_stats) so that no page reads the rollouts themselves.

    `cls` depends on the prompt's earlier samplings too (learned: rose from <= 25% to >= 75%);
    with `cls_before` and the zero-variance flags it says how this sampling moved the class counts
    (PromptClassStep sums that per step)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    prompt_id = models.CharField(max_length=200)
    step = models.BigIntegerField()
    n = models.IntegerField(help_text="rollouts of the prompt at this step")
    graded = models.IntegerField(help_text="of which graded (correct is not null)")
    correct = models.IntegerField()
    zero_var = models.BooleanField(help_text="every reward of the prompt at this step is equal (no learning signal)")
    cls = models.CharField(max_length=12, help_text="the prompt's class after this sampling (prompt_stats.CLASSES)")
    cls_before = models.CharField(max_length=12, blank=True, help_text="its class before ('' at its first sampling)")
    zero_var_before = models.BooleanField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "prompt_id", "step"], name="tracking_promptstep_unique")]


class PromptClassStep(models.Model):
    """How a run's class counts moved at one step: per class, the prompts that entered it minus
    those that left it there (zero-variance alike). The class-counts-over-time chart is the running
    sum over the run's steps: one row per step, however many prompts. Kept with PromptStepStat."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    step = models.BigIntegerField()
    learned = models.IntegerField(default=0)
    forgotten = models.IntegerField(default=0)
    always = models.IntegerField(default=0)
    never = models.IntegerField(default=0)
    mixed = models.IntegerField(default=0)
    zero_variance = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="tracking_promptclassstep_unique")]


class PromptLineage(models.Model):
    """A prompt of a run, summed up over every step it was sampled at (its last PromptStepStat
    row and the totals): the prompt-lineage table, one row per prompt. Kept with PromptStepStat."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    prompt_id = models.CharField(max_length=200)
    prompt = models.TextField()
    gold = models.TextField(blank=True, help_text="the gold answer the trainer logged with the prompt, if any")
    cls = models.CharField(max_length=12)
    zero_var = models.BooleanField(help_text="its latest sampling had every reward equal")
    samplings = models.IntegerField()
    first_step = models.BigIntegerField()
    last_step = models.BigIntegerField()
    first_rate = models.FloatField()
    last_rate = models.FloatField()
    min_rate = models.FloatField()
    max_rate = models.FloatField()
    graded = models.IntegerField()
    correct = models.IntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "prompt_id"], name="tracking_promptlineage_unique")]
        indexes = [models.Index(fields=["run", "cls", "prompt_id"], name="tracking_promptlineage_cls")]

    @property
    def rate(self) -> float:
        return self.correct / self.graded if self.graded else 0.0

    @property
    def delta(self) -> float:
        return self.last_rate - self.first_rate


class Rewind(models.Model):
    """A resumed attempt took the run back to `after_step`: what earlier attempts had logged after
    it was moved out of the curve into LostPoint / LostSample (history, drawn faintly), so that
    the new attempt's values are stored instead of being dropped as duplicates."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="rewinds")
    after_step = models.BigIntegerField(help_text="steps after this one were lost; -1: all of them")
    attempt = models.PositiveIntegerField(help_text="the attempt that starts here")
    lost_points = models.IntegerField(default=0)
    lost_samples = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class LostPoint(models.Model):
    """A point of an earlier attempt that a rewind took out of the curve. Same columns as Point,
    plus the attempt that logged it; no FK constraint on series (as Point), deleted with its run."""

    pk = models.CompositePrimaryKey("rewind", "series", "step")
    rewind = models.ForeignKey(Rewind, on_delete=models.CASCADE, related_name="+")
    series = models.ForeignKey(Series, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    step = models.BigIntegerField()
    value = models.FloatField()
    ts = models.FloatField()
    attempt = models.PositiveIntegerField()


class LostSample(models.Model):
    """A rollout of an earlier attempt that a rewind took out of the run (kept as history)."""

    rewind = models.ForeignKey(Rewind, on_delete=models.CASCADE, related_name="samples")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    step = models.BigIntegerField()
    group = models.IntegerField(default=0)
    index = models.IntegerField(default=0)
    attempt = models.PositiveIntegerField()
    data = models.JSONField(help_text="the Sample row's fields as they were")

    class Meta:
        ordering = ["step", "group", "index"]
        indexes = [models.Index(fields=["run", "step"], name="tracking_lostsample_step")]


class Comment(models.Model):
    """A team note pinned to a step of a run: a marker on every chart of that run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="comments")
    step = models.BigIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField(max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step", "created_at"]
        indexes = [models.Index(fields=["run", "step"], name="tracking_comment_step")]


class MlflowExperiment(models.Model):
    """The MLflow experiment id of an r1lab project (`Run.project`), for the MLflow protocol.

    MLflow clients address experiments by a server-assigned id (`set_experiment(name)` looks the
    name up, creates it when missing, then reads it by id), and an experiment may exist before it
    has runs; a project is only a name on its runs. This table gives each project name a stable
    small id and remembers the experiments created empty. Experiment "0" (MLflow's `Default`, where
    runs go when the client names none) is the project "default" and has no row.
    """

    name = models.CharField(max_length=100, unique=True, help_text="the r1lab project")
    tags = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.pk}: {self.name}"


# --- alarms that notify (alert_services.py) ------------------------------------------------------------


class AlertKind(models.TextChoices):
    # from the curves (curve_signals.alarms), checked by the periodic scan
    ENTROPY_COLLAPSE = "entropy_collapse", "entropy collapse"
    ZERO_STD = "zero_std", "zero-std groups near 1"
    LENGTH_WITHOUT_ACCURACY = "length_without_accuracy", "length rising while accuracy is flat"
    LANGUAGE_MIXING = "language_mixing", "language mixing rising"
    # from the run's and its stage's status
    STALE = "stale", "stale run (silent)"
    CRASHED = "crashed", "crashed run (trainer crashed, worker lost)"
    STAGE_FAILED = "stage_failed", "failed stage"


def all_alert_kinds() -> list[str]:
    return list(AlertKind.values)


class AlertSettings(models.Model):
    """Where a project's alarms go and when they fire, editable per project (Run.project); the
    row with project "" applies to every project that has none of its own (a pipeline run's
    stages report under the pipeline run's name: one project each)."""

    project = models.CharField(max_length=100, unique=True, blank=True, help_text='"" = every project without its own')
    webhook_url = models.URLField(max_length=1000, blank=True, help_text="a Slack-compatible incoming webhook")
    emails = models.TextField(blank=True, help_text="addresses, one per line or comma-separated")
    kinds = models.JSONField(default=all_alert_kinds, blank=True, help_text="the alarm kinds that notify (AlertKind values)")
    step_window = models.PositiveIntegerField(default=1000, help_text="each alarm at most once per run and window of this many steps")
    # thresholds (curve_signals.Thresholds; defaults there)
    entropy_collapse_frac = models.FloatField(default=0.1, help_text="entropy below this share of its start")
    zero_std_frac = models.FloatField(default=0.9, help_text="frac_reward_zero_std at or above this")
    length_rise_frac = models.FloatField(default=0.2, help_text="response length up by more than this share…")
    accuracy_flat_abs = models.FloatField(default=0.02, help_text="…while accuracy moves less than this")
    language_mixing_rise = models.FloatField(default=0.1, help_text="mixed-language share up by more than this")
    stale_after_s = models.PositiveIntegerField(default=600, help_text="a running run silent this long is stale")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project"]

    def __str__(self) -> str:
        return self.project or "(every project)"

    @property
    def email_list(self) -> list[str]:
        return [e.strip() for e in self.emails.replace(",", "\n").splitlines() if e.strip()]


class Alert(models.Model):
    """An alarm that fired for a run. One per (run, kind, key): `key` is the step window
    (`w<step // step_window>`) of a curve alarm, the attempt of a status alarm: never sent twice."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="alerts")
    project = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=40, choices=AlertKind.choices)
    key = models.CharField(max_length=64)
    step = models.BigIntegerField(null=True, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run", "kind", "key"], name="tracking_alert_once")]


class Delivery(models.Model):
    """One alert sent through one channel: what was sent, how it went."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its (next) try
        SENDING = "sending"  # claimed by a task now
        SENT = "sent"
        FAILED = "failed"  # gave up (a 4xx, or every try failed)

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=2000, help_text="the webhook URL or the addresses, as when it was sent")
    payload = models.JSONField(default=dict, help_text="the webhook body, or the e-mail's subject and text")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "channel"], name="tracking_delivery_once")]
