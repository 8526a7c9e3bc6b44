from django.apps import AppConfig


class LabConfig(AppConfig):
    """The lab as a whole: `manage.py demo` (users, seeds of every app, the processes). The one
    place that may import every app; the apps themselves depend in one direction
    (rollouts → pipelines → tracking / curation → accounts, tests/test_boundary.py)."""

    name = "r1lab.lab"
    label = "lab"
