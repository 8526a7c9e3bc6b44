"""Receivers that tell a user's open WebSockets to re-check their access (consumers.py).

They forward to `services.user_access_changed` (sent after commit) when access may have been
taken away, and only then: is_active / is_staff / is_superuser turned off on a saved user, roles
removed or cleared, the user deleted. Other saves (a new user, an e-mail edit, the `last_login`
update of every login) push nothing."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver

from r1lab.accounts.services import user_access_changed

User = get_user_model()
ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser")


def _skipped(instance, update_fields) -> bool:
    return instance._state.adding or (update_fields is not None and not set(ACCESS_FIELDS) & set(update_fields))


@receiver(pre_save, sender=User, dispatch_uid="r1lab.accounts.user_saving")
def _user_saving(sender, instance, update_fields=None, **kwargs):
    # What the row says before this save: the instance in hand has the new values already.
    if not _skipped(instance, update_fields):
        instance._r1lab_access_before = User.objects.filter(pk=instance.pk).values_list(*ACCESS_FIELDS).first()


@receiver(post_save, sender=User, dispatch_uid="r1lab.accounts.user_saved")
def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    before = instance.__dict__.pop("_r1lab_access_before", None)
    if created or before is None:
        return
    after = tuple(getattr(instance, f) for f in ACCESS_FIELDS)
    if any(was and not now for was, now in zip(before, after)):
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
