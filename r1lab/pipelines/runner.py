"""The worker's side of a stage attempt: write SPEC.json, start the trainer as a subprocess, stream
its output to the stage's log, follow its progress, heartbeat, relay a cancel, record the outcome.

Runs inside the Celery worker process, which never imports torch (CUDA is not fork-safe and a
crash of the trainer must never take the worker down): the trainer is `python -m
training_backend run SPEC.json` (or `deepspeed --num_gpus N --module training_backend run …`)
in its own session/process group, with PR_SET_PDEATHSIG so that a `kill -9` of the worker takes
the trainer down with it (the lost-worker sweep then marks the stage `failed (worker lost)`).
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from r1lab.pipelines import attempts
from r1lab.pipelines.stage_templates import MAKE_BASE
from r1lab.pipelines.trainer_env import allowed_env
from training_backend import stage as contract  # the worker <-> trainer contract (stdlib only)

log = logging.getLogger(__name__)

POLL_S = 0.5
CANCEL_GRACE_S = 120  # after SIGTERM, wait this long for the checkpoint before SIGKILL
PR_SET_PDEATHSIG = 1


def heartbeat_interval_s() -> float:
    """A few heartbeats per timeout window, never more often than twice a second."""
    return max(0.5, min(5.0, settings.R1LAB_HEARTBEAT_TIMEOUT_S / 6))


# Set in each prefork pool process (tasks._pool_process_dies_with_worker): its index 0..c-1.
POOL_INDEX: int | None = None


def trainer_env(start: attempts.AttemptStart, *, token: str | None = None) -> dict:
    """The trainer's environment: the allow-listed part of the worker's, plus the run token. A
    worker started with `-c <gpus>` runs one stage per pool process; a single-GPU stage in pool
    process i sees only GPU i, unless the operator set CUDA_VISIBLE_DEVICES for the worker (then
    it is left alone). Multi-GPU stages see every GPU (run them on a `-c 1` worker; see
    docs/gpu-workers.md)."""
    env = allowed_env()
    env["PYTHONUNBUFFERED"] = "1"
    if token:
        env[contract.RUN_TOKEN_ENV] = token
    if "CUDA_VISIBLE_DEVICES" not in os.environ and start.num_gpus == 1 and POOL_INDEX is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(POOL_INDEX)
    return env


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def trainer_command(start: attempts.AttemptStart, spec_path: Path, *, report_url: str | None,
                    metrics_out: Path) -> list[str]:
    """The trainer's argv. Holds no secret: any local user sees it in `ps`, and a multi-GPU
    launcher echoes it into trainer.log, which viewers read. The run token goes in the
    environment (trainer_env)."""
    python = settings.R1LAB_TRAINER_PYTHON or sys.executable
    if start.kind == MAKE_BASE:
        steps = int(start.config.get("steps", 0) or 0)
        return [python, "-m", "training_backend", "make-base", start.output_dir] + (["--steps", str(steps)] if steps else [])
    args = ["run", str(spec_path), "--metrics-out", str(metrics_out)]
    if report_url:
        args += ["--report-url", report_url]
    if start.resume:
        args.append("--resume")
    if start.num_gpus > 1:
        deepspeed = shutil.which("deepspeed", path=str(Path(python).parent)) or shutil.which("deepspeed") or "deepspeed"
        return [deepspeed, "--num_gpus", str(start.num_gpus), "--module", "training_backend", *args]
    return [python, "-m", "training_backend", *args]


def _absolute(path: str | None) -> str | None:
    """Registered paths may be relative to the project; SPEC.json resolves against its own folder."""
    if not path:
        return None
    p = Path(path)
    return str(p if p.is_absolute() else Path(settings.BASE_DIR) / p)


def write_spec(start: attempts.AttemptStart) -> Path:
    return contract.write_spec(
        Path(start.attempt_dir) / contract.SPEC_FILE, kind=start.kind, model_path=_absolute(start.model_path),
        output_dir=_absolute(start.output_dir), train_data=_absolute(start.train_data),
        eval_data=_absolute(start.eval_data), seed=int(start.config.get("seed", 0) or 0),
        config={k: v for k, v in start.config.items() if k != "seed"})


class _Progress:
    """Follows the trainer's log file and keeps its latest progress line."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = ""
        self.step: int | None = None
        self.first_step: int | None = None  # the first step this attempt ran (resume: checkpoint + 1)
        self.total: int | None = None
        self.eta_s: float | None = None
        self.changed = False

    def poll(self) -> None:
        try:
            with self.path.open("r", errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            p = contract.parse_progress(line)
            if p is not None:
                self.step, self.total, self.eta_s, self.changed = p.step, p.total, p.eta_s, True
                self.first_step = self.step if self.first_step is None else self.first_step


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stage_execute(*, stage_id: int, attempt: int) -> str:
    """Run one attempt of a stage to its end. Returns the outcome ("noop" for a redelivery)."""
    from r1lab.tracking.models import Run as TrackedRun
    from r1lab.tracking.services import tracked_run_rotate_token

    start = attempts.stage_attempt_start(stage_id=stage_id, attempt=attempt, worker_host=socket.gethostname(),
                                         worker_pid=os.getpid())
    if start is None:
        return "noop"
    attempt_dir = Path(start.attempt_dir)
    attempt_dir.mkdir(parents=True, exist_ok=True)
    Path(start.output_dir).mkdir(parents=True, exist_ok=True)
    if start.kind != MAKE_BASE:  # an earlier attempt's outputs must not pass for this one's
        contract.clear_outputs(start.output_dir)
    spec_path = write_spec(start)
    report_url = token = None
    if start.tracked_run_id:
        tracked = TrackedRun.objects.get(pk=start.tracked_run_id)
        token = tracked_run_rotate_token(run=tracked, attempt=start.attempt)  # the per-attempt ingest token
        report_url = f"{settings.R1LAB_PUBLIC_URL}/api/v1/runs/{tracked.pk}"
    metrics_out = attempt_dir / "metrics.jsonl"
    cmd = trainer_command(start, spec_path, report_url=report_url if token else None, metrics_out=metrics_out)
    log_path = attempt_dir / "trainer.log"
    env = trainer_env(start, token=token)
    with log_path.open("ab") as log_file:
        log_file.write(f"$ {' '.join(cmd)}\n".encode())
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=settings.BASE_DIR, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    attempts.stage_attempt_set_trainer_pid(stage_id=stage_id, attempt=attempt, pid=proc.pid)
    log.info("stage %s attempt %s: trainer pid %s: %s", stage_id, attempt, proc.pid, " ".join(cmd))

    progress = _Progress(log_path)
    interval = heartbeat_interval_s()
    last_beat = 0.0
    signalled_at: float | None = None
    gone = False
    while True:
        code = proc.poll()
        progress.poll()
        now = time.monotonic()
        if code is not None:
            break
        if progress.changed or now - last_beat >= interval:
            close_old_connections()
            answer = attempts.stage_heartbeat(stage_id=stage_id, attempt=attempt, step=progress.step,
                                              first_step=progress.first_step, total=progress.total,
                                              eta_s=progress.eta_s, progress_changed=progress.changed)
            progress.changed = False
            last_beat = now
            if answer in ("cancel", "gone") and signalled_at is None:
                gone = answer == "gone"
                log.info("stage %s attempt %s: %s; SIGTERM to the trainer", stage_id, attempt, answer)
                _signal_group(proc, signal.SIGTERM)
                signalled_at = now
        if signalled_at is not None and now - signalled_at > CANCEL_GRACE_S:
            _signal_group(proc, signal.SIGKILL)
        time.sleep(POLL_S)

    progress.poll()
    if progress.step is not None:
        attempts.stage_heartbeat(stage_id=stage_id, attempt=attempt, step=progress.step,
                                 first_step=progress.first_step, total=progress.total, eta_s=progress.eta_s,
                                 progress_changed=True)
    Out = contract.Out
    if start.kind == MAKE_BASE:
        outputs = ({Out.KIND: MAKE_BASE, Out.STATUS: contract.SUCCEEDED, Out.FINAL_MODEL: start.output_dir}
                   if code == contract.ExitCode.OK else None)
    else:
        outputs = contract.read_outputs(start.output_dir)
    if outputs is not None:
        outputs = {**outputs, Out.METRICS_JSONL: str(metrics_out)}
    if gone:
        return "gone"
    close_old_connections()
    stage = attempts.stage_attempt_finish(stage_id=stage_id, attempt=attempt, exit_code=code, outputs=outputs,
                                          signalled_cancel=signalled_at is not None)
    return stage.status if stage is not None else "gone"
