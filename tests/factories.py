"""factory_boy factories shared by the tests. Each app's tests may add their own module too."""
from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from r1lab.pipelines.models import PipelineRun

PASSWORD = "pw-for-tests-1"


class UserFactory(factory.django.DjangoModelFactory):
    """`UserFactory(role="researcher")`; `UserFactory(is_staff=True, is_superuser=True)` for an admin."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        self.set_password(PASSWORD)
        self.save()
        if extracted:
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])


class PipelineRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PipelineRun

    name = factory.Sequence(lambda n: f"run-{n}")
    template = "r1_zero"
    created_by = factory.SubFactory(UserFactory, role="researcher")
