from django.contrib import admin

from r1lab.tracking.models import Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "status", "external", "created_by", "created_at", "last_seen_at")
    list_filter = ("status", "external", "project")
    search_fields = ("name", "project")
    readonly_fields = ("token_hash",)
