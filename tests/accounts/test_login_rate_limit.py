"""Login rate limiting (django-axes, issue 15): before it, any number of passwords could be tried."""
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db.models import F

from r1lab.accounts.services import api_token_create

pytestmark = pytest.mark.django_db


def _login(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def locked_out(client, make_user, settings):
    """A user whose username is locked out from the test client's address (127.0.0.1)."""
    settings.AXES_FAILURE_LIMIT = 3  # the default (10) only makes the test slower: each try hashes
    user = make_user("viewer")
    answers = [_login(client, user.username, "wrong") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    return user


def test_the_configured_policy():
    from django.conf import settings

    assert settings.AXES_FAILURE_LIMIT == 10
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_after_the_limit_the_right_password_is_refused_and_the_page_says_when_to_retry(client, locked_out, password):
    answer = _login(client, locked_out.username, password)
    assert answer.status_code == 429
    assert not _logged_in(client)
    text = answer.content.decode()
    assert "Too many failed logins" in text and "Try again in 15 minutes, after" in text
    assert answer["Retry-After"] == "900"


def test_another_address_is_not_locked_out(client, locked_out, password):
    assert _login(client, locked_out.username, password, REMOTE_ADDR="10.1.2.3").status_code == 302
    assert _logged_in(client)


def test_after_the_cool_off_the_right_password_works(client, locked_out, password):
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert _login(client, locked_out.username, password).status_code == 302
    assert _logged_in(client)


def test_after_an_admin_reset_the_right_password_works(client, locked_out, password):
    call_command("axes_reset_username", locked_out.username, verbosity=0)
    assert _login(client, locked_out.username, password).status_code == 302


def test_api_bearer_tokens_are_not_affected(client, locked_out):
    _, raw = api_token_create(user=locked_out)
    answer = client.get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 200, answer.content
