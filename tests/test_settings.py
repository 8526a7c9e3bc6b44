"""Bad configuration fails at start with a message naming the variable."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("url,needle", [
    ("postgres://postgres@127.0.0.1:1/nowhere", "DATABASE_URL=postgres://postgres@127.0.0.1:1/nowhere"),
    ("mysql://root@127.0.0.1/x", "DATABASE_URL must be a postgres:// URL"),
    ("not a url", "DATABASE_URL"),
])
def test_wrong_database_url_fails_at_start_naming_the_variable(url, needle):
    result = _manage("migrate", DATABASE_URL=url)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_password_is_redacted_in_the_message():
    result = _manage("migrate", DATABASE_URL="postgres://postgres:hunter2@127.0.0.1:1/x")
    assert result.returncode != 0
    assert "hunter2" not in result.stderr and "***" in result.stderr


def test_bad_redis_url_and_bad_boolean():
    assert "REDIS_URL must start with" in _manage("migrate", REDIS_URL="http://x").stderr
    assert "DEBUG='maybe' is not a boolean" in _manage("migrate", DEBUG="maybe").stderr


def test_celery_config_protects_training_stages():
    from r1lab.celery import app

    conf = app.conf
    assert {q.name for q in conf.task_queues} == {"gpu", "default"}
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_time_limit is None and conf.task_soft_time_limit is None
    assert conf.worker_prefetch_multiplier == 1


def test_redis_channel_layer_reads_longer_than_it_blocks():
    # channels_redis blocks in BZPOPMIN for brpop_timeout (5 s); redis-py 8 reads with a 5 s socket
    # timeout by default, so under load the read timed out first and the WebSocket consumer died.
    code = ("from channels.layers import get_channel_layer; l = get_channel_layer(); "
            "print(l.brpop_timeout, l.create_pool(0).connection_kwargs['socket_timeout'])")
    result = _manage("shell", "-c", code, REDIS_URL="redis://127.0.0.1:6379/9")
    assert result.returncode == 0, result.stderr
    brpop, read = map(float, result.stdout.strip().splitlines()[-1].split())
    assert read > brpop * 2


# The production variables the README documents ("Production"); with them `check --deploy`
# is clean. Before issue 15 nothing in the environment could set secure cookies, HSTS or the
# HTTPS redirect, so the check always warned (W004, W008, W012, W016).
PRODUCTION = {"R1LAB_SECURE": "1", "R1LAB_PROXY_SSL_HEADER": "X-Forwarded-Proto", "DEBUG": "0",
              "ALLOWED_HOSTS": "lab.example.com", "SECRET_KEY": "k3y-" + "x8Yq2" * 12}


def test_check_deploy_passes_with_the_documented_production_variables():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    code = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)")
    shown = _manage("shell", "-c", code, **PRODUCTION).stdout.strip().splitlines()[-1]
    assert shown == "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https')"


def test_check_deploy_warns_without_them():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0", SECRET_KEY=PRODUCTION["SECRET_KEY"])
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


def test_bad_proxy_ssl_header_names_the_variable():
    result = _manage("check", R1LAB_PROXY_SSL_HEADER="X-Forwarded-Proto: https")
    assert result.returncode != 0 and "R1LAB_PROXY_SSL_HEADER=" in result.stderr
    assert "Traceback" not in result.stderr
