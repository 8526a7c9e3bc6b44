from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "r1lab.accounts"
    label = "accounts"

    def ready(self):
        from r1lab.accounts import signals  # noqa: F401  (connects the receivers)
