"""What a `python -m training_backend` subprocess (a stage's trainer, a model check) inherits from
the process that starts it: the allow-listed part of the environment. No Django models here, so
that both the worker's runner and the services' model check can import it."""
from __future__ import annotations

import os

from django.conf import settings

# What the trainer inherits from the worker's environment: the system, Python, the accelerator
# stack and the ML libraries' own settings. Never the worker's secrets (DATABASE_URL, REDIS_URL,
# SECRET_KEY, cloud credentials…): the trainer talks to the dashboard over HTTP with its run
# token and needs none of them. Operators add names or prefixes with R1LAB_TRAINER_ENV_ALLOW.
TRAINER_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "HOSTNAME",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "OMP_NUM_THREADS",
    "TOKENIZERS_PARALLELISM", "MASTER_ADDR", "MASTER_PORT", "http_proxy", "https_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"})
TRAINER_ENV_PREFIXES = ("LC_", "CUDA_", "NCCL_", "NVIDIA_", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_", "HF_",
                        "TRANSFORMERS_", "HUGGINGFACE_", "DS_", "DEEPSPEED_", "VLLM_", "MKL_", "KMP_", "XDG_")


def _allowed(name: str, extra: list[str]) -> bool:
    if name in TRAINER_ENV_NAMES or name.startswith(TRAINER_ENV_PREFIXES):
        return True
    return any(name == e or (e.endswith("*") and name.startswith(e[:-1])) for e in extra)


def allowed_env() -> dict:
    """The allow-listed part of this process's environment: what any `python -m training_backend`
    it starts (a stage, a model check) may see."""
    extra = [e.strip() for e in settings.R1LAB_TRAINER_ENV_ALLOW.split(",") if e.strip()]
    return {k: v for k, v in os.environ.items() if _allowed(k, extra)}
