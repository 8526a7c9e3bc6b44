from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "r1lab.curation"
    label = "curation"
