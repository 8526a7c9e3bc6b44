"""Celery tasks: thin. Each names its queue; the work is in runner/services.

`run_stage` (queue `gpu`) runs one attempt of one stage; a redelivered message for an attempt
that already started or finished is a no-op. `mark_lost_workers` (queue `default`, Celery beat)
fails running stages whose worker stopped heartbeating.
"""
from __future__ import annotations

import ctypes
import logging
import signal

from celery import shared_task
from celery.signals import worker_process_init

from r1lab.pipelines import attempts, prompt_import, runner


@worker_process_init.connect
def _pool_process_dies_with_worker(**kwargs):
    """A prefork pool process follows its worker on `kill -9`, and the trainer (PDEATHSIG) follows
    the pool process: nothing keeps training for a stage already marked `worker lost`."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(runner.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:  # not Linux: the trainer's own PDEATHSIG is gone too; the sweep still works
        pass
    from billiard.process import current_process

    # `-c <gpus>`: pool process i runs its single-GPU stages on GPU i (see runner.trainer_env).
    runner.POOL_INDEX = getattr(current_process(), "index", None)


# Queues are named where each task is sent (apply_async(queue=...) and the beat schedule's
# options): Celery 5.7 deprecates the `queue` task attribute.
GPU_QUEUE, DEFAULT_QUEUE = "gpu", "default"


log = logging.getLogger(__name__)


@shared_task(name="pipelines.run_stage", acks_late=True, reject_on_worker_lost=True,
             time_limit=None, soft_time_limit=None, max_retries=0)
def run_stage(stage_id: int, attempt: int) -> str:
    return runner.stage_execute(stage_id=stage_id, attempt=attempt)


@shared_task(name="pipelines.mark_lost_workers", ignore_result=True, time_limit=60,
             expires=30)
def mark_lost_workers() -> list[int]:
    return attempts.stages_mark_lost()


@shared_task(name="pipelines.prompt_upload_check", acks_late=True, time_limit=3600, soft_time_limit=3500)
def prompt_upload_check(token: str) -> str:
    """A large prompt-set upload read and checked in the background (sent to the `default` queue)."""
    staged = prompt_import.upload_check(token=token)
    return staged.status if staged else "gone"
