"""Curation reads: queues, search and filters, agreement, versions."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.postgres.search import SearchQuery
from django.db import connection, transaction
from django.db.models import Count, Exists, IntegerField, JSONField, OuterRef, Q, QuerySet, Subquery, Value

from r1lab.curation import agreement, labels
from r1lab.curation.models import (
    SEARCH_CONFIG,
    Assignment,
    CurationProject,
    DatasetVersion,
    Example,
    Label,
    QueueCount,
    Revision,
)

SEARCH_FIELDS = ("prompt", "reasoning")


# --- queue ------------------------------------------------------------------------------------
def queue_counts(*, user, project: CurationProject) -> dict:
    """`user`'s done / remaining in `project`: one row of QueueCount, kept by the services (no counting)."""
    row = QueueCount.objects.filter(user=user, project=project).values_list("done", "remaining").first() or (0, 0)
    return {"done": row[0], "remaining": row[1], "total": row[0] + row[1]}


def queue_projects(*, user) -> list[dict]:
    """The projects where `user` has assignments, with done / remaining counts (from QueueCount)."""
    rows = (
        QueueCount.objects.filter(user=user).filter(Q(done__gt=0) | Q(remaining__gt=0))
        .select_related("project").order_by("project__name")
    )
    return [{"project": r.project, "done": r.done, "remaining": r.remaining} for r in rows]


def editor_example(*, pk: int, user) -> Example | None:
    """The editor's example in one query, with what the page needs about `user` annotated on it:
    `mine_assigned` (in their queue), `mine_label` (their label values or None), `mine_done` /
    `mine_remaining` (their queue counts in the example's project)."""
    counts = QueueCount.objects.filter(project=OuterRef("project_id"), user=user)
    return (
        Example.objects.select_related("project", "reviewed_by", "updated_by")
        .annotate(
            mine_assigned=Exists(Assignment.objects.filter(example=OuterRef("pk"), user=user)),
            mine_label=Subquery(Label.objects.filter(example=OuterRef("pk"), annotator=user).values("values")[:1], output_field=JSONField()),
            mine_done=Subquery(counts.values("done")[:1]), mine_remaining=Subquery(counts.values("remaining")[:1]),
            mine_for_user_id=Value(user.pk, output_field=IntegerField()),
        )
        .filter(pk=pk).first()
    )


def queue_next(*, user, project: CurationProject) -> Example | None:
    """The next example in `user`'s queue: the oldest not-done assignment (rejected ones come back)."""
    assignment = (
        Assignment.objects.filter(user=user, project=project, done=False).order_by("example_id").only("example_id").first()
    )
    return Example.objects.filter(pk=assignment.example_id).first() if assignment else None


def queue_neighbour(*, user, example: Example, direction: int) -> int | None:
    """Id of the next (+1) / previous (-1) example assigned to `user` in the example's project (J/K)."""
    qs = Assignment.objects.filter(user=user, project_id=example.project_id)
    if direction > 0:
        qs = qs.filter(example_id__gt=example.pk).order_by("example_id")
    else:
        qs = qs.filter(example_id__lt=example.pk).order_by("-example_id")
    return qs.values_list("example_id", flat=True).first()


# --- search and filters -------------------------------------------------------------------------
@dataclass
class ExampleFilter:
    q: str = ""
    status: str = ""
    language: str = ""
    source: str = ""
    annotator: str = ""  # username: examples assigned to them
    label_key: str = ""
    label_value: str = ""
    min_length: int | None = None
    max_length: int | None = None
    problems: list[str] = field(default_factory=list)  # filters that were ignored, and why

    @classmethod
    def from_params(cls, params) -> "ExampleFilter":
        f = cls(
            q=params.get("q", "").strip()[:300], status=params.get("status", ""), language=params.get("language", "").strip()[:16],
            source=params.get("source", ""), annotator=params.get("annotator", "").strip()[:150],
            label_key=params.get("label_key", ""), label_value=params.get("label_value", "").strip(),
        )
        for name in ("min_length", "max_length"):
            raw = params.get(name, "").strip()
            if raw:
                try:
                    setattr(f, name, max(0, int(raw)))
                except ValueError:
                    f.problems.append(f"{name.replace('_', ' ')} must be a whole number; ignored")
        return f

    def querystring_items(self) -> list[tuple[str, str]]:
        items = [("q", self.q), ("status", self.status), ("language", self.language), ("source", self.source),
                 ("annotator", self.annotator), ("label_key", self.label_key), ("label_value", self.label_value),
                 ("min_length", "" if self.min_length is None else str(self.min_length)),
                 ("max_length", "" if self.max_length is None else str(self.max_length))]
        return [(k, v) for k, v in items if v]


def full_text_supported() -> bool:
    return connection.vendor == "postgresql"


def examples_filtered(*, project: CurationProject, f: ExampleFilter) -> QuerySet[Example]:
    """Examples of `project` matching `f`, newest id last. Full text uses the GIN index on PostgreSQL."""
    qs = Example.objects.filter(project=project)
    if f.q:
        if full_text_supported():
            # The stored, trigger-maintained tsvector with its GIN index (see models.Example.search).
            qs = qs.filter(search=SearchQuery(f.q, config=SEARCH_CONFIG, search_type="websearch"))
        else:  # SQLite (the embedded demo): a plain substring match
            qs = qs.filter(Q(prompt__icontains=f.q) | Q(reasoning__icontains=f.q))
    if f.status in Example.Status.values:
        qs = qs.filter(status=f.status)
    if f.language:
        qs = qs.filter(language=f.language)
    if f.source in Example.Source.values:
        qs = qs.filter(source=f.source)
    if f.annotator:
        qs = qs.filter(Exists(Assignment.objects.filter(example=OuterRef("pk"), user__username=f.annotator)))
    if f.label_key:
        value = labels.value_for_filter(project.label_schema, f.label_key, f.label_value)
        if value is None:
            f.problems.append(f"label filter {f.label_key}={f.label_value!r} is not a valid answer; ignored")
        else:
            # The key was checked against the project's label set, so it is safe in a lookup name.
            qs = qs.filter(Exists(Label.objects.filter(example=OuterRef("pk"), **{f"values__{f.label_key}": value})))
    if f.min_length is not None:
        qs = qs.filter(length__gte=f.min_length)
    if f.max_length is not None:
        qs = qs.filter(length__lte=f.max_length)
    return qs


# How many matches the examples page counts exactly (beyond: "2000+" or "about N") and pages.
EXACT_UP_TO = 2000
# Above this many matches *estimated by the planner*, nothing is counted: the page says "about N".
ESTIMATE_ABOVE = 10 * EXACT_UP_TO


class ExampleMatches:
    """The examples page's rows: the matches of a filtered queryset in id order, paged, for a Paginator.

    Why not `ORDER BY id LIMIT 50` plus a capped count: the planner costs `search @@ query` at one
    operator call a row, but a row's stored tsvector (~2 kB, in TOAST) takes ~10 µs to read and
    match, so for a rare word it walks the primary key testing row after row (13,000 rows, 210 ms,
    for a word in 0.4% of 100k examples), and the capped count with a status filter scanned the
    table (200–600 ms). Instead (PostgreSQL; on SQLite the same steps without the planner parts):

    1. The planner's row estimate for the filters (EXPLAIN, no execution; word frequencies from
       the column's statistics). Above ESTIMATE_ABOVE the matches are dense: nothing is counted,
       the page says "about N", and step 3's second case pages them.
    2. Otherwise the ids of at most EXACT_UP_TO + 1 matches, with sequential and plain index scans
       off for that one query, so it is a bitmap scan (GIN index for words, btree for the other
       filters): the index says which rows match and at most EXACT_UP_TO + 1 rows are visited,
       their tsvectors not read.
    3. All ids known (≤ EXACT_UP_TO): a page is a slice of them, fetched by primary key (50 rows).
       More than that: `ORDER BY id` with the filters finds a page after ~50 · N / matches rows.
    """

    def __init__(self, qs: QuerySet[Example], *, fields: tuple[str, ...]):
        self.qs = qs.order_by()
        self.fields = fields
        self.ids: list[int] | None = None
        self.capped = False
        self.estimate: int | None = None  # set when the count is the planner's estimate
        self._count: int | None = None

    def count(self) -> int:
        if self._count is None:
            if connection.vendor == "postgresql":
                estimate = self._planner_estimate()
                if estimate > ESTIMATE_ABOVE:
                    self.capped, self.estimate, self._count = True, estimate, EXACT_UP_TO
                    return self._count
            ids_qs = self.qs.values_list("id", flat=True)[: EXACT_UP_TO + 1]
            if connection.vendor == "postgresql":
                with transaction.atomic(), connection.cursor() as cur:
                    # This transaction only: a bitmap scan (see the docstring, step 2).
                    cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
                    ids = list(ids_qs)
                    # Back on at once, in case this ran inside a caller's transaction (a savepoint).
                    cur.execute("SET LOCAL enable_seqscan = DEFAULT; SET LOCAL enable_indexscan = DEFAULT")
            else:
                ids = list(ids_qs)
            self.capped = len(ids) > EXACT_UP_TO
            self.ids = None if self.capped else sorted(ids)
            self._count = min(len(ids), EXACT_UP_TO)
        return self._count

    def _planner_estimate(self) -> int:
        sql, params = self.qs.values("id").query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cur.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, window: slice) -> list[Example]:
        self.count()
        rows = Example.objects.only(*self.fields)
        if self.ids is not None:
            page_ids = self.ids[window]
            return list(rows.filter(pk__in=page_ids).order_by("id")) if page_ids else []
        return list(self.qs.only(*self.fields).order_by("id")[window])


def review_queue(*, project: CurationProject | None) -> QuerySet[Example]:
    qs = Example.objects.filter(status=Example.Status.SUBMITTED).select_related("project")
    if project is not None:
        qs = qs.filter(project=project)
    return qs.order_by("id")


# --- four eyes ------------------------------------------------------------------------------------
def approval_refusal(*, example: Example, user) -> str | None:
    """Why `user` may not approve `example`, or None. Four eyes (issue 15): the approval comes from
    someone other than the example's author (revision 1) and its last editor. Staff included: the
    rule is about whose work it is, not about roles."""
    author_id = Revision.objects.filter(example_id=example.pk, number=1).values_list("author_id", flat=True).first()
    if author_id is not None and author_id == user.pk:
        return "You wrote this example: another reviewer must approve it."
    if example.updated_by_id is not None and example.updated_by_id == user.pk:
        return f"You made the last edit of this example (version {example.version}): another reviewer must approve it."
    return None


def own_example_ids(*, ids, user) -> set[int]:
    """Those of `ids` that `user` wrote (revision 1) or edited last: not theirs to approve."""
    return set(
        Example.objects.filter(id__in=ids)
        .filter(Q(updated_by=user) | Exists(Revision.objects.filter(example=OuterRef("pk"), number=1, author=user)))
        .values_list("id", flat=True)
    )


def project_status_counts(*, project: CurationProject) -> dict[str, int]:
    counts = dict(Example.objects.filter(project=project).values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {s: counts.get(s, 0) for s in Example.Status.values}


# --- agreement ------------------------------------------------------------------------------------
def project_agreement(*, project: CurationProject, worst: int = 50) -> dict:
    """Per-label agreement over examples labelled by 2+ annotators, and the widest disagreements.

    Cohen's κ when exactly two annotators labelled the project's shared examples, Krippendorff's α
    otherwise (nominal for yes/no and choices, interval for scales; α is given for two as well).
    """
    schema = [q for q in project.label_schema if q["type"] in ("scale", "bool", "choice")]
    shared = (
        Label.objects.filter(example__project=project).values("example_id").annotate(n=Count("id")).filter(n__gte=2).values("example_id")
    )
    units: dict[int, dict[int, dict]] = defaultdict(dict)
    for ex_id, annotator_id, values in Label.objects.filter(example_id__in=shared).values_list("example_id", "annotator_id", "values"):
        units[ex_id][annotator_id] = values or {}
    annotators = sorted({a for coders in units.values() for a in coders})
    per_label = []
    spread: dict[int, float] = defaultdict(float)
    for q in schema:
        key = q["key"]
        by_unit = {ex: {a: v.get(key) for a, v in coders.items() if v.get(key) is not None} for ex, coders in units.items()}
        by_unit = {ex: coders for ex, coders in by_unit.items() if len(coders) >= 2}
        metric = "interval" if q["type"] == "scale" else "nominal"
        kappa = None
        if len(annotators) == 2:
            a, b = annotators
            kappa = agreement.cohen_kappa([(c[a], c[b]) for c in by_unit.values() if a in c and b in c])
        alpha = agreement.krippendorff_alpha(by_unit, metric=metric)
        per_label.append({
            "key": key, "question": q["question"], "type": q["type"], "units": len(by_unit),
            "method": "Cohen's κ" if len(annotators) == 2 else f"Krippendorff's α ({metric})",
            "value": kappa if len(annotators) == 2 else alpha, "alpha": alpha, "kappa": kappa,
        })
        for ex, coders in by_unit.items():
            spread[ex] += agreement.disagreement(list(coders.values()), q["type"], q.get("min", 1), q.get("max", 5))
    worst_ids = [ex for ex, s in sorted(spread.items(), key=lambda kv: (-kv[1], kv[0])) if s > 0][:worst]
    examples = Example.objects.in_bulk(worst_ids)
    return {
        "annotators": len(annotators), "units": len(units), "labels": per_label,
        "worst": [{"example": examples[i], "spread": round(spread[i], 3), "labels": units[i]} for i in worst_ids if i in examples],
    }


# --- dataset versions -------------------------------------------------------------------------------
def dataset_versions_for_picker() -> QuerySet[DatasetVersion]:
    """Every dataset version, newest first, for the SFT stage's dataset picker (`version.label`)."""
    return DatasetVersion.objects.select_related("project").order_by("-created_at", "-id")
