from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
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
