from django.contrib import admin

from r1lab.admin_registration import register_plain
from r1lab.pipelines.models import BaseModel, PipelineRun, PromptSet, Stage, StageAttempt


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("name", "template", "status", "created_by", "created_at")
    list_filter = ("status", "template")
    search_fields = ("name",)


register_plain(BaseModel, PromptSet, StageAttempt)
register_plain(Stage, list_filter=("status", "kind"))
