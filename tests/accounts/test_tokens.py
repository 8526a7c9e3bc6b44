import io

import pytest
from django.core.management import CommandError, call_command

from r1lab.accounts.models import ApiToken, hash_token
from r1lab.accounts.selectors import api_token_user
from r1lab.accounts.services import api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_a_token_stored_hashed(make_user):
    user = make_user("researcher")
    out = io.StringIO()
    call_command("create_api_token", user.username, stdout=out)
    raw = out.getvalue().strip()
    assert raw.startswith("r1p_") and len(raw) > 40
    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hash_token(raw)
    assert raw not in (token.key_hash, token.prefix)
    assert api_token_user(raw=raw) == user


def test_create_api_token_unknown_user():
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("create_api_token", "ghost")


def test_revoked_or_wrong_token_authenticates_nobody(make_user):
    user = make_user("viewer")
    token, raw = api_token_create(user=user)
    assert api_token_user(raw=raw + "x") is None
    assert api_token_user(raw="") is None
    api_token_revoke(token=token)
    assert api_token_user(raw=raw) is None


def test_tokens_page_creates_and_shows_once(client_as):
    client = client_as("viewer")
    response = client.post("/account/tokens/", {"name": "laptop"})
    assert response.status_code == 200
    raw = response.context["new_token"]
    assert raw and raw in response.content.decode()
    again = client.get("/account/tokens/")
    assert raw not in again.content.decode()
