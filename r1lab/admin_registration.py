"""Admin registration shared by the apps: every model gets a usable changelist.

Large tables (points, samples, revisions) get raw-id widgets for their foreign keys and no
exact row count (COUNT(*) over a million rows on every changelist view is the admin's
classic slow page).
"""
from __future__ import annotations

from django.contrib import admin
from django.db import models


def register_plain(*model_classes, large: bool = False, **options) -> None:
    for model in model_classes:
        fields = [f for f in model._meta.concrete_fields if not isinstance(f, models.CompositePrimaryKey)]
        display = [f.name for f in fields if not isinstance(f, (models.TextField, models.JSONField))][:7]
        attrs = {
            "list_display": tuple(display) or ("__str__",),
            "raw_id_fields": tuple(f.name for f in fields if isinstance(f, models.ForeignKey)),
            "list_per_page": 50,
            "show_full_result_count": not large,
            **options,
        }
        admin.site.register(model, type(f"{model.__name__}Admin", (admin.ModelAdmin,), attrs))
