from django.db import migrations, models

# Every existing series' summary from its points (ingest keeps it from here on). Plain SQL that
# PostgreSQL and SQLite both run; one pass over the points, once.
BACKFILL = """
UPDATE tracking_series SET
    min_value = (SELECT min(p.value) FROM tracking_point p WHERE p.series_id = tracking_series.id),
    max_value = (SELECT max(p.value) FROM tracking_point p WHERE p.series_id = tracking_series.id),
    last_step = (SELECT max(p.step) FROM tracking_point p WHERE p.series_id = tracking_series.id),
    last_value = (SELECT p.value FROM tracking_point p WHERE p.series_id = tracking_series.id
                  ORDER BY p.step DESC LIMIT 1)
"""


class Migration(migrations.Migration):

    dependencies = [
        ('tracking', '0006_prompt_lineage_and_run_forks'),
    ]

    operations = [
        migrations.AddField(model_name='series', name='last_step', field=models.BigIntegerField(blank=True, null=True)),
        migrations.AddField(model_name='series', name='last_value', field=models.FloatField(blank=True, null=True)),
        migrations.AddField(model_name='series', name='max_value', field=models.FloatField(blank=True, null=True)),
        migrations.AddField(model_name='series', name='min_value', field=models.FloatField(blank=True, null=True)),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AddIndex(model_name='series', index=models.Index(
            fields=['key', 'run', 'last_value', 'min_value', 'max_value'], name='tracking_series_key_summary')),
    ]
