from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from r1lab import live
from r1lab.accounts.models import ApiToken, hash_token
from r1lab.accounts.permissions import ROLES

User = get_user_model()
TOKEN_PREFIX = "r1p_"


def api_token_create(*, user, name: str = "") -> tuple[ApiToken, str]:
    """Create a personal token; returns (row, raw token). The raw token is not stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=raw[:12], key_hash=hash_token(raw))
    return token, raw


def api_token_revoke(*, token: ApiToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


def roles_ensure() -> None:
    for role in ROLES:
        Group.objects.get_or_create(name=role)


@transaction.atomic
def user_create_with_role(*, username: str, password: str, role: str | None, is_staff: bool = False):
    roles_ensure()
    user = User.objects.create_user(username=username, password=password, is_staff=is_staff, is_superuser=is_staff)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def user_access_changed(*, user_id: int) -> None:
    """After commit, tell the user's open WebSockets to re-check their access (they close if it
    is gone): see r1lab/accounts/consumers.py. Called by the receivers in signals.py."""
    from r1lab.accounts.consumers import user_group_name

    def send():
        live.group_send(user_group_name(user_id), {"type": "user.access_changed"})

    transaction.on_commit(send)


@transaction.atomic
def user_deactivate(*, user) -> None:
    """The user can no longer log in; their sessions stop working at the next request and their
    WebSockets close (signals.py → user_access_changed)."""
    user.is_active = False
    user.save(update_fields=["is_active"])
