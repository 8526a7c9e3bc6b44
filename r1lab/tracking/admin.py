from django.contrib import admin

from r1lab.admin_registration import register_plain
from r1lab.tracking.models import (Alert, AlertSettings, Comment, Delivery, LostSample, MlflowExperiment, PromptClassStep,
                                   PromptLineage, PromptStepStat, Rewind, Run, Sample, Series)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "status", "external", "created_by", "created_at", "last_seen_at")
    list_filter = ("status", "external", "project")
    search_fields = ("name", "project")
    readonly_fields = ("token_hash",)


# Point, Rollup and LostPoint have composite primary keys, which Django 5.2's admin cannot show;
# points are read through the run page, its CSV export and GET /api/v1/runs/{id}/metrics.
register_plain(Series, Comment, Rewind, MlflowExperiment, AlertSettings, Alert)
register_plain(Delivery, list_filter=("status", "channel"))
register_plain(LostSample, large=True)
register_plain(Sample, large=True, list_filter=("truncated", "correct"))
register_plain(PromptStepStat, PromptLineage, PromptClassStep, large=True)
