"""Inspect a model folder without importing torch here: run `python -m training_backend
inspect-model PATH` (training_backend.model_info) and read its one check line (the contract is
training_backend.stage's `inspect-model` section).

The web process never imports torch or transformers (tests/pipelines/test_no_torch_in_worker.py);
a subprocess also bounds what an untrusted folder can do to it: the check is killed after
R1LAB_MODEL_CHECK_TIMEOUT_S, sees only the allow-listed environment (no database URL, no secret
key) and no GPU.
"""
from __future__ import annotations

import subprocess
import sys

from django.conf import settings

from r1lab.pipelines.trainer_env import allowed_env
from training_backend import stage as contract  # stdlib only


class FolderRefused(ValueError):
    """The folder cannot be a base model; str() says why, for the person who typed the path."""


def inspect_model_folder(path: str) -> dict:
    """The folder's info (contract.Info keys), or FolderRefused with the reason."""
    python = settings.R1LAB_TRAINER_PYTHON or sys.executable
    env = {**allowed_env(), "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    timeout = settings.R1LAB_MODEL_CHECK_TIMEOUT_S
    try:
        proc = subprocess.run([python, "-m", "training_backend", contract.INSPECT_COMMAND, str(path)],
                              cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FolderRefused(f"the check of the folder did not finish in {timeout} s") from None
    parsed = contract.parse_model_check(proc.stdout)
    if parsed is None:
        last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "no output")
        raise FolderRefused(f"the check of the folder crashed (exit {proc.returncode}): {last[-300:]}")
    info, reason = parsed
    if reason is not None:
        raise FolderRefused(reason)
    return info
