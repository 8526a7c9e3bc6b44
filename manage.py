#!/usr/bin/env python
"""Django's command-line utility for r1lab."""
import os
import sys

# Commands that must work without a reachable database.
NO_DB_COMMANDS = {"help", "--help", "-h", "version", "--version", "makemigrations", "collectstatic", "check", "startapp"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    try:
        import django

        django.setup()
        if command not in NO_DB_COMMANDS and not os.environ.get("R1LAB_SKIP_PREFLIGHT"):
            from r1lab.preflight import PreflightError, check_database

            try:
                check_database()
            except PreflightError as exc:
                sys.exit(f"r1lab: {exc}")
    except ImproperlyConfigured as exc:
        sys.exit(f"r1lab: configuration error: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
