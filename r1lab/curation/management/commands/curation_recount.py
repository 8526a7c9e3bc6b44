"""`manage.py curation_recount [--project SLUG]`: rebuild the queue counters from the assignments.

The services keep QueueCount in step with the assignments in the same transaction; this repairs
it after assignment rows were changed some other way (admin, shell, SQL, a restored backup) and
says which counters had drifted.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from r1lab.curation.services import queue_counts
from r1lab.curation.models import CurationProject


class Command(BaseCommand):
    help = "Recompute the annotators' done / remaining queue counters from their assignments."

    def add_arguments(self, parser):
        parser.add_argument("--project", default="", help="slug of one project (default: all)")

    def handle(self, *args, project: str = "", **options):
        target = None
        if project:
            target = CurationProject.objects.filter(slug=project).first()
            if target is None:
                raise CommandError(f"No curation project with slug {project!r}.")
        result = queue_counts.queue_counts_recompute(project=target)
        for row in result.fixed:
            self.stdout.write(
                f"project {row['project_id']} user {row['user_id']}: done/remaining {row['was'][0]}/{row['was'][1]}"
                f" -> {row['now'][0]}/{row['now'][1]}"
            )
        self.stdout.write(f"{result.counters} counter(s); {len(result.fixed)} fixed.")
