from __future__ import annotations

from django.utils import timezone

from r1lab.accounts.models import ApiToken, hash_token


def api_token_user(*, raw: str):
    """The active user owning this personal token, or None."""
    if not raw:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # Touch at most once a minute: the ingest API is hot and this is a write.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def bearer_token(request) -> str:
    """The raw token of an `Authorization: Bearer <token>` header, or ''."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()


def api_tokens_of(*, user):
    return ApiToken.objects.filter(user=user).order_by("-created_at")
