from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "r1lab.rollouts"
    label = "rollouts"
    verbose_name = "Rollout browser and rejection-sampling workbench"
