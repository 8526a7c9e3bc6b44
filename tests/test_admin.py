"""Django admin for every model of r1lab's apps, and each changelist opens for staff."""
import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

# Django 5.2's admin cannot show a model with a composite primary key.
NOT_IN_ADMIN = {"tracking.Point", "tracking.Rollup", "tracking.LostPoint"}
R1LAB_MODELS = [
    m for m in apps.get_models()
    if m.__module__.startswith("r1lab.") and f"{m._meta.app_label}.{m.__name__}" not in NOT_IN_ADMIN
]


def test_every_model_is_in_the_admin():
    missing = [f"{m._meta.app_label}.{m.__name__}" for m in R1LAB_MODELS if not admin.site.is_registered(m)]
    assert not missing, f"not registered in the admin: {missing}"


@pytest.mark.django_db
@pytest.mark.parametrize("model", R1LAB_MODELS, ids=lambda m: f"{m._meta.app_label}.{m.__name__}")
def test_changelist_opens(client_as, model):
    client = client_as("staff")
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert client.get(url).status_code == 200
