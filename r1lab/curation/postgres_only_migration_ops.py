"""Migration operations that only touch PostgreSQL (full-text search); SQLite keeps the state only."""
from __future__ import annotations

from django.db import migrations


class _PostgresOnly:
    """Apply the operation's SQL on PostgreSQL only; the migration state changes everywhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class PostgresOnlyAddIndex(_PostgresOnly, migrations.AddIndex):
    pass


class PostgresOnlyRemoveIndex(_PostgresOnly, migrations.RemoveIndex):
    pass


class PostgresOnlySQL(_PostgresOnly, migrations.RunSQL):
    pass
