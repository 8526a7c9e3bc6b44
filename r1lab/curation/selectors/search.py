"""Finding examples: the examples page's filters (full text on PostgreSQL), its matches paged
without counting what need not be counted, and the rows it shows."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.contrib.postgres.search import SearchQuery
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from r1lab.curation import labels
from r1lab.curation.models import SEARCH_CONFIG, Assignment, CurationProject, Example, Label

# The columns of the examples page.
EXAMPLE_LIST_FIELDS = (
    "id", "prompt", "status", "language", "source", "length", "accuracy", "format_score", "language_score", "reflection_count",
)


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



def examples_matching(*, project: CurationProject, f: ExampleFilter) -> ExampleMatches:
    """The examples page's rows: `project`'s examples matching `f`, with the page's columns."""
    return ExampleMatches(examples_filtered(project=project, f=f), fields=EXAMPLE_LIST_FIELDS)
