from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "r1lab.accounts"
    label = "accounts"
