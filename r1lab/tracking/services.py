from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from r1lab.accounts.models import hash_token
from r1lab.tracking.models import Run

RUN_TOKEN_PREFIX = "r1r_"


def tracked_run_create(*, name: str, project: str = "default", config: dict | None = None, user=None,
                       external: bool = False) -> tuple[Run, str]:
    """Create a tracked run; returns (run, raw ingest token). Only the hash is stored."""
    raw = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    run = Run.objects.create(name=name[:200], project=(project or "default")[:100], config=config or {},
                             created_by=user, external=external, token_hash=hash_token(raw))
    return run, raw


def tracked_run_rotate_token(*, run: Run) -> str:
    """A fresh ingest token for a new attempt of the run's stage; the old one stops working."""
    raw = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    Run.objects.filter(pk=run.pk).update(token_hash=hash_token(raw))
    run.token_hash = hash_token(raw)
    return raw


@transaction.atomic
def tracked_run_set_status(*, run: Run, status: str) -> Run:
    if status not in Run.Status.values:
        raise ValueError(f"unknown run status {status!r}")
    run.status = status
    run.finished_at = None if status == Run.Status.RUNNING else timezone.now()
    run.save(update_fields=["status", "finished_at"])
    return run
