"""The permission matrix: one place that says which role may do what.

Roles are Django groups. Staff (is_staff) may do everything. Every view names the action it
needs with `@require_action(...)` (HTML views) or checks `can(user, ...)` (API, templates);
a user without it gets 403, never a 500 and never the action.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.core.exceptions import PermissionDenied

RESEARCHER = "researcher"
ANNOTATOR = "annotator"
REVIEWER = "reviewer"
VIEWER = "viewer"
ROLES = (RESEARCHER, ANNOTATOR, REVIEWER, VIEWER)

ALL = frozenset(ROLES)

# action -> roles allowed (staff always allowed)
MATRIX: dict[str, frozenset[str]] = {
    # runs, pipelines, models, prompt sets, metrics, rollouts
    "runs.view": ALL,
    "runs.launch": frozenset({RESEARCHER}),  # define, launch, cancel, resume, retry
    "runs.comment": frozenset({RESEARCHER, REVIEWER, ANNOTATOR}),
    "alerts.manage": frozenset({RESEARCHER}),  # a project's alarm settings: webhook, e-mails, thresholds
    "models.manage": frozenset({RESEARCHER}),  # base models, prompt set imports
    "workers.view": frozenset({RESEARCHER}),
    # curation
    "curation.view": ALL,
    "curation.annotate": frozenset({ANNOTATOR, REVIEWER}),
    "curation.review": frozenset({REVIEWER}),
    "curation.manage": frozenset({REVIEWER, RESEARCHER}),  # projects, imports, versions, exports
    # rollouts (the rollout browser and the rejection-sampling workbench; reading is runs.view)
    "rollouts.send": frozenset({RESEARCHER, ANNOTATOR, REVIEWER}),  # a completion → curation draft
    "rollouts.spotcheck": frozenset({RESEARCHER, ANNOTATOR, REVIEWER}),  # load an RS stage, spot-check rows
    "rollouts.freeze": frozenset({REVIEWER}),  # kept set → dataset version (approves: a reviewer signs off)
    # API
    "api.token": ALL,
}


def user_roles(user) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_r1lab_roles", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True)) & ALL
        user._r1lab_roles = cached
    return cached


def can(user, action: str) -> bool:
    if action not in MATRIX:
        raise KeyError(f"unknown action {action!r}; add it to MATRIX in r1lab/accounts/permissions.py")
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return bool(user_roles(user) & MATRIX[action])


def require_action(action: str) -> Callable:
    """Decorator for views: login required, then 403 unless `can(user, action)`."""
    if action not in MATRIX:
        raise KeyError(f"unknown action {action!r}")

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                from django.contrib.auth.views import redirect_to_login

                return redirect_to_login(request.get_full_path())
            if not can(request.user, action):
                raise PermissionDenied(f"your role may not {action}")
            return view(request, *args, **kwargs)

        wrapped.r1lab_action = action  # read by the test that every view is guarded
        return wrapped

    return decorator
