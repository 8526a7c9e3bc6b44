from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from r1lab.accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it (it is stored hashed, shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label to recognise the token by")

    def handle(self, *args, username: str, name: str, **options):
        User = get_user_model()
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist as exc:
            raise CommandError(f"no user named {username!r}") from exc
        _, raw = api_token_create(user=user, name=name)
        self.stdout.write(raw)
