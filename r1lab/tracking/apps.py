from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "r1lab.tracking"
    label = "tracking"
