"""The Celery app. Configuration lives in settings (CELERY_* names)."""
import os

from celery import Celery
from kombu import Queue
from kombu.transport import TRANSPORT_ALIASES

# The embedded broker (no REDIS_URL): kombu's filesystem transport with atomic writes/claims.
TRANSPORT_ALIASES.setdefault("r1fs", "r1lab.broker:Transport")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")

app = Celery("r1lab")
app.config_from_object("django.conf:settings", namespace="CELERY")
# `gpu`: training stages, one at a time per GPU worker process; `default`: everything else.
app.conf.task_queues = (Queue("gpu"), Queue("default"))
app.autodiscover_tasks()


from celery.signals import worker_init  # noqa: E402


@worker_init.connect
def _preflight(**kwargs):
    """A worker with a wrong DATABASE_URL stops at start with one clear line."""
    import sys

    from r1lab.preflight import PreflightError, check_database

    try:
        check_database()
    except PreflightError as exc:
        sys.exit(f"r1lab worker: {exc}")
