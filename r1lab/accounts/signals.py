"""Receivers that tell a user's open WebSockets to re-check their access (consumers.py).

They hold no logic: each forwards to `services.user_access_changed`, sent after commit. Only
changes that can take access away: the user saved with is_active / is_staff / is_superuser
possibly changed, roles removed or cleared, the user deleted. A new user has no sockets yet,
and `last_login` updates (every login) are skipped."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from r1lab.accounts.services import user_access_changed

User = get_user_model()
ACCESS_FIELDS = {"is_active", "is_staff", "is_superuser"}


@receiver(post_save, sender=User, dispatch_uid="r1lab.accounts.user_saved")
def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created or (update_fields is not None and not ACCESS_FIELDS & set(update_fields)):
        return
    user_access_changed(user_id=instance.pk)


@receiver(post_delete, sender=User, dispatch_uid="r1lab.accounts.user_deleted")
def _user_deleted(sender, instance, **kwargs):
    user_access_changed(user_id=instance.pk)


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="r1lab.accounts.roles_changed")
def _roles_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action not in ("post_remove", "post_clear"):
        return
    if not reverse:  # user.groups.remove(...) / .clear() / the admin's user form
        user_access_changed(user_id=instance.pk)
    else:  # group.user_set.remove(...); a clear from the group's side names no users (the timer covers it)
        for user_id in pk_set or ():
            user_access_changed(user_id=user_id)
