"""`manage.py prompt_lineage_rebuild [RUN_ID ...] [--all]`: fill the prompt-lineage rollup
(tracking.prompt_stats) of runs from their rollouts.

Ingest keeps the rollup as rollouts arrive; runs logged before it existed have none until they
are rebuilt (the prompt-lineage page offers the same, per run). Rebuilding a run that has one
recomputes it: the result is the same.
"""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Exists, OuterRef

from r1lab.tracking.models import Run, Sample
from r1lab.tracking.prompt_stats import prompt_stats_rebuild


class Command(BaseCommand):
    help = "Rebuild the prompt-lineage rollup of runs from their rollouts."

    def add_arguments(self, parser):
        parser.add_argument("run_ids", nargs="*", type=int, help="tracked run ids")
        parser.add_argument("--all", action="store_true", help="every run that has rollouts")

    def handle(self, *args, run_ids: list[int], all: bool = False, **options):
        if not run_ids and not all:
            raise CommandError("name run ids, or --all")
        runs = Run.objects.filter(Exists(Sample.objects.filter(run=OuterRef("pk")))) if all else Run.objects.filter(pk__in=run_ids)
        found = {r.pk: r for r in runs}
        missing = sorted(set(run_ids) - set(found))
        if missing:
            raise CommandError(f"no tracked run with id {', '.join(map(str, missing))}")
        for run in found.values():
            t0 = time.perf_counter()
            n = prompt_stats_rebuild(run_id=run.pk)
            self.stdout.write(f"run {run.pk} ({run.name}): {n} prompts in {time.perf_counter() - t0:.1f} s")
