"""Dataset version reads: a project's versions, one version's uses and rows, the SFT picker."""
from __future__ import annotations

from django.db.models import QuerySet

from r1lab.curation.models import CurationProject, DatasetVersion, DatasetVersionItem, DatasetVersionUse


def project_versions(*, project: CurationProject, limit: int | None = None) -> QuerySet[DatasetVersion]:
    """The project's versions (the latest `limit`, else all), newest first, with who froze each."""
    versions = project.versions.select_related("created_by")
    return versions if limit is None else versions[:limit]


def dataset_version_uses(*, version: DatasetVersion) -> QuerySet[DatasetVersionUse]:
    """Who trained on the version (lineage records)."""
    return version.uses.all()


def dataset_version_items_preview(*, version: DatasetVersion, limit: int = 50) -> QuerySet[DatasetVersionItem]:
    """The version's first rows, for its page."""
    return version.items.only("example_ref", "prompt", "row_hash")[:limit]


def dataset_versions_for_picker() -> QuerySet[DatasetVersion]:
    """Every dataset version, newest first, for the SFT stage's dataset picker (`version.label`)."""
    return DatasetVersion.objects.select_related("project").order_by("-created_at", "-id")
