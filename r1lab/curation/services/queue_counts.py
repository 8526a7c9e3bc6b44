"""The annotators' queue counters (QueueCount: done / remaining per project and user).

The services that change assignments add to them in the same transaction (`queue_counts_add`);
`queue_counts_recompute` (`manage.py curation_recount`) rebuilds them from the assignments.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, Q

from r1lab.curation.models import Assignment, CurationProject, QueueCount
from r1lab.curation.services.bulk import BULK_BATCH


def queue_counts_add(*, deltas: dict[tuple[int, int], tuple[int, int]]) -> None:
    """Add (done, remaining) to the QueueCount of each (project_id, user_id), creating missing rows.

    Called in the same transaction as the assignment change it mirrors (after it, so that every
    writer takes the assignment rows' locks before the counters'), in key order (no deadlocks).
    One upsert per key: `INSERT … ON CONFLICT DO UPDATE` (PostgreSQL and SQLite alike).
    """
    rows = [(p, u, d, r) for (p, u), (d, r) in sorted(deltas.items()) if d or r]
    if not rows:
        return
    table = connection.ops.quote_name(QueueCount._meta.db_table)
    with connection.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (project_id, user_id, done, remaining) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (user_id, project_id) DO UPDATE SET done = {table}.done + excluded.done, "
            f"remaining = {table}.remaining + excluded.remaining",
            rows,
        )


@dataclass(frozen=True)
class RecountResult:
    counters: int  # counters after the recount
    fixed: list[dict]  # [{"project_id", "user_id", "was": (done, remaining), "now": (done, remaining)}]


def queue_counts_recompute(*, project: CurationProject | None = None) -> RecountResult:
    """Rebuild the QueueCount rows (of `project`, else all) from the assignments; says what drifted.

    On PostgreSQL the assignments table is locked in SHARE mode for the few hundred ms this takes:
    assignment writers wait, so no change lands between the count and the rewrite.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(f"LOCK TABLE {connection.ops.quote_name(Assignment._meta.db_table)} IN SHARE MODE")
        assignments = Assignment.objects.all() if project is None else Assignment.objects.filter(project=project)
        fresh = {
            (r["project_id"], r["user_id"]): (r["n_done"], r["n_remaining"])
            for r in assignments.values("project_id", "user_id").order_by()
            .annotate(n_done=Count("id", filter=Q(done=True)), n_remaining=Count("id", filter=Q(done=False)))
        }
        counters = QueueCount.objects.all() if project is None else QueueCount.objects.filter(project=project)
        before = {(c.project_id, c.user_id): (c.done, c.remaining) for c in counters.select_for_update()}
        fixed = [
            {"project_id": key[0], "user_id": key[1], "was": before.get(key, (0, 0)), "now": fresh.get(key, (0, 0))}
            for key in sorted(set(before) | set(fresh)) if before.get(key, (0, 0)) != fresh.get(key, (0, 0))
        ]
        counters.delete()
        QueueCount.objects.bulk_create(
            [QueueCount(project_id=p, user_id=u, done=d, remaining=r) for (p, u), (d, r) in sorted(fresh.items())],
            batch_size=BULK_BATCH,
        )
    return RecountResult(counters=len(fresh), fixed=fixed)
