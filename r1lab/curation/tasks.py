"""Celery tasks: thin wrappers over services."""
from __future__ import annotations

from celery import shared_task
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from r1lab.curation.services import import_jobs


@shared_task(name="curation.import_run", queue="default", acks_late=True, time_limit=3600, soft_time_limit=3500)
def import_job_run_task(job_id: int) -> str:
    try:
        job = import_jobs.import_job_run(job_id=job_id)
    except (ValidationError, DatabaseError, OSError, ValueError) as exc:
        # The transaction rolled back: nothing was imported. Say why on the job's page.
        import_jobs.import_job_fail(job_id=job_id, message=f"Import failed, nothing was imported: {exc}")
        raise
    return job.status


@shared_task(name="curation.import_check", queue="default", acks_late=True, time_limit=3600, soft_time_limit=3500)
def import_job_check_task(job_id: int) -> str:
    try:
        job = import_jobs.import_job_check(job_id=job_id)
    except (DatabaseError, OSError, ValueError) as exc:
        import_jobs.import_job_fail(job_id=job_id, message=f"The file could not be checked: {exc}")
        raise
    return job.status
