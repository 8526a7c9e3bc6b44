from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from r1lab.accounts.models import ApiToken, hash_token
from r1lab.accounts.permissions import ALL


@functools.cache
def _pg_token_user_sql() -> str:
    User = get_user_model()
    groups = User._meta.get_field("groups")
    through = groups.remote_field.through._meta
    return (
        f"SELECT u.*, t.id AS r1lab_token_id, t.last_used_at AS r1lab_token_last_used_at, "
        f"ARRAY(SELECT g.name FROM {through.db_table} ug JOIN {Group._meta.db_table} g ON g.id = ug.group_id "
        f"WHERE ug.{groups.m2m_column_name()} = u.id) AS r1lab_role_names "
        f"FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id "
        f"WHERE t.key_hash = %s AND t.revoked_at IS NULL AND u.is_active LIMIT 1")


def api_token_user(*, raw: str):
    """The active user owning this personal token, or None.

    Every API call starts here. On PostgreSQL one raw query brings the token, its user and the
    user's roles (the ORM's two queries and its query building cost a few milliseconds a call on
    the ingest path); elsewhere the ORM.
    """
    if not raw:
        return None
    if connection.vendor == "postgresql":
        user = next(iter(get_user_model().objects.raw(_pg_token_user_sql(), [hash_token(raw)])), None)
        if user is None:
            return None
        user._r1lab_roles = frozenset(user.r1lab_role_names) & ALL  # what permissions.user_roles caches
        token_id, last_used_at = user.r1lab_token_id, user.r1lab_token_last_used_at
    else:
        token = (ApiToken.objects.select_related("user")
                 .filter(key_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True).first())
        if token is None:
            return None
        user, token_id, last_used_at = token.user, token.pk, token.last_used_at
    now = timezone.now()
    # Touch at most once a minute: the ingest API is hot and this is a write.
    if last_used_at is None or (now - last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    return user


def bearer_token(request) -> str:
    """The raw token of an `Authorization: Bearer <token>` header, or ''."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()


def api_tokens_of(*, user):
    return ApiToken.objects.filter(user=user).order_by("-created_at")
