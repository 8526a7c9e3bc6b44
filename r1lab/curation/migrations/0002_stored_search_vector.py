"""Full-text search on a stored tsvector kept by a trigger (PostgreSQL), replacing the expression index.

See models.Example.search for why. On SQLite only the (unused) column is added.
"""
import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.conf import settings
from django.db import migrations

from r1lab.curation.postgres_only_migration_ops import PostgresOnlyAddIndex, PostgresOnlyRemoveIndex, PostgresOnlySQL

TRIGGER = """
CREATE TRIGGER curation_example_search_update
BEFORE INSERT OR UPDATE OF prompt, reasoning, search ON curation_example
FOR EACH ROW EXECUTE FUNCTION tsvector_update_trigger(search, 'pg_catalog.english', prompt, reasoning);
UPDATE curation_example SET search = to_tsvector('pg_catalog.english', coalesce(prompt, '') || ' ' || coalesce(reasoning, ''));
"""
DROP_TRIGGER = "DROP TRIGGER IF EXISTS curation_example_search_update ON curation_example;"


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        PostgresOnlyRemoveIndex(
            model_name='example',
            name='cur_ex_fts',
        ),
        migrations.AddField(
            model_name='example',
            name='search',
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        PostgresOnlySQL(TRIGGER, DROP_TRIGGER),
        PostgresOnlyAddIndex(
            model_name='example',
            index=django.contrib.postgres.indexes.GinIndex(fields=['search'], name='cur_ex_search'),
        ),
    ]
