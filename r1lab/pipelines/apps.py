from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "r1lab.pipelines"
    label = "pipelines"
