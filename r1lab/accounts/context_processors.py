from r1lab.accounts.permissions import MATRIX, can, user_roles


class _Perms:
    """`{% if perms_r1.runs_launch %}` in templates: dots become underscores."""

    def __init__(self, user):
        self._user = user

    def __getattr__(self, name: str) -> bool:
        action = name.replace("_", ".", 1)
        if action not in MATRIX:
            raise AttributeError(name)
        return can(self._user, action)


def roles(request):
    user = getattr(request, "user", None)
    return {"perms_r1": _Perms(user), "user_roles": sorted(user_roles(user)) if user else []}
