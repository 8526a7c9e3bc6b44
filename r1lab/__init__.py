"""r1lab: a self-hosted lab for DeepSeek-R1-style post-training (the Django project)."""
from .celery import app as celery_app

__all__ = ("celery_app",)
