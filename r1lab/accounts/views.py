import math

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from r1lab.accounts.models import ApiToken
from r1lab.accounts.permissions import require_action
from r1lab.accounts.selectors import api_tokens_of
from r1lab.accounts.services import api_token_create, api_token_revoke


@require_action("api.token")
def tokens(request):
    new_token = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        _, new_token = api_token_create(user=request.user, name=name)
    return render(request, "accounts/tokens.html", {"tokens": api_tokens_of(user=request.user), "new_token": new_token})


@require_POST
@require_action("api.token")
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    api_token_revoke(token=token)
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("accounts:tokens")


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout answer (AXES_LOCKOUT_CALLABLE), instead of the login page: 429, and
    when to retry. Not a view of its own (no URL, so no @require_action): the axes middleware
    returns it for a login POST that is locked out. Every try while locked out restarts the
    wait, so the wait runs from now."""
    cooloff = settings.AXES_COOLOFF_TIME
    retry_at = timezone.now() + cooloff
    minutes = math.ceil(cooloff.total_seconds() / 60)
    response = render(request, "accounts/locked_out.html", {
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes, "retry_at": retry_at,
    }, status=429)
    response["Retry-After"] = str(math.ceil(cooloff.total_seconds()))
    return response
