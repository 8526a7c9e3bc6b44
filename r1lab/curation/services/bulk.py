"""Many rows at once: COPY on PostgreSQL (psycopg 3), bulk_create elsewhere. Used by the
assignments (projects.assignments_fill) and the imports."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

BULK_BATCH = 2000  # rows per bulk_create / per locked chunk


def rows_insert(*, model, columns: list[str], rows: Iterable[tuple]) -> None:
    """Insert plain rows into `model`'s table: COPY on PostgreSQL (psycopg 3), bulk_create elsewhere.

    `columns` are database column names; every NOT NULL column without a database default must be
    among them. Triggers (the search vector) and constraints apply as for INSERT. `rows` may be a
    generator: COPY streams them to the server as they come.
    """
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        with connection.cursor() as cur:
            with cur.cursor.copy(f"COPY {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    rows = list(rows)
    if not rows:
        return
    attnames = {f.column: f.attname for f in model._meta.concrete_fields}
    model.objects.bulk_create([model(**{attnames[c]: v for c, v in zip(columns, row)}) for row in rows], batch_size=BULK_BATCH)
