from django.contrib import admin

from r1lab.pipelines.models import PipelineRun


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("name", "template", "status", "created_by", "created_at")
    list_filter = ("status", "template")
    search_fields = ("name",)
