from r1lab.admin_registration import register_plain
from r1lab.curation.models import (
    Assignment, CurationProject, DatasetVersion, DatasetVersionItem, DatasetVersionUse, Example, ImportJob,
    Label, QueueCount, Revision, StatusEvent, StepLabel,
)

# Versions are immutable (content-hashed): the admin is for reading them, edits go through the app.
register_plain(CurationProject, QueueCount, ImportJob, DatasetVersion, DatasetVersionUse)
register_plain(Example, large=True, list_filter=("status", "language", "source"))
register_plain(Revision, Assignment, Label, StepLabel, StatusEvent, DatasetVersionItem, large=True)
