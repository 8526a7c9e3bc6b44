"""Celery tasks of the tracking app: thin, queue `default` (named where each is sent).

`scan_alarms` (Celery beat, every R1LAB_ALERT_SCAN_S): raise the alarms of runs that reported
lately and of stale runs. `deliver_alert`: one try of one delivery (webhook or e-mail), retried
with backoff while the service says so; a delivery is sent at most once however often its task runs.
"""
from __future__ import annotations

from celery import shared_task

from r1lab.tracking import alert_services

DEFAULT_QUEUE = "default"


@shared_task(name="tracking.scan_alarms", ignore_result=True, time_limit=300, soft_time_limit=240)
def scan_alarms() -> int:
    return len(alert_services.alarms_scan())


@shared_task(name="tracking.deliver_alert", bind=True, ignore_result=True, acks_late=True, time_limit=120,
             max_retries=None)
def deliver_alert(self, delivery_id: int) -> None:
    retry_in = alert_services.delivery_attempt(delivery_id=delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in, queue=DEFAULT_QUEUE)
