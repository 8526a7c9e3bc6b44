"""r1lab: a self-hosted lab for DeepSeek-R1-style post-training (the Django project)."""
from .celery import app as celery_app

# Set by r1lab/asgi.py before the settings load: the web server pools its database connections
# (see R1LAB_DB_POOL in settings.py); nothing else it starts inherits that, as an environment
# variable would make it.
WEB_SERVER = False

__all__ = ("celery_app",)
