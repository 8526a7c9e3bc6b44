"""Start-up checks: fail early with a message that names the variable to fix.

A wrong DATABASE_URL must stop `make demo`, daphne and the worker at start with one clear
line, not surface later as a traceback deep inside a request.
"""
from __future__ import annotations

from django.conf import settings
from django.db import connections
from django.db.utils import OperationalError


class PreflightError(RuntimeError):
    pass


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


def check_database() -> None:
    try:
        connections["default"].ensure_connection()
    except OperationalError as exc:
        if settings.DATABASE_URL:
            where = f"DATABASE_URL={_redact(settings.DATABASE_URL)}"
        else:
            where = f"the embedded SQLite database {settings.DATABASES['default']['NAME']}"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PreflightError(f"cannot connect to {where}: {first_line}") from exc
    finally:
        connections["default"].close()


def check_broker() -> None:
    from r1lab.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # kombu raises transport-specific errors; all mean "unreachable"
        where = f"REDIS_URL={_redact(settings.REDIS_URL)}" if settings.REDIS_URL else "the filesystem broker"
        raise PreflightError(f"cannot connect to {where}: {exc}") from exc
