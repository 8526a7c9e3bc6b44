"""Demo data for `manage.py demo`: a cold-start project with a few dozen chain-of-thought examples.

Some are clean, some mix languages (Chinese words in English reasoning, R1's problem), some
reflect ("Wait, …"), some have a wrong answer. Assigned to `annotator` and `reviewer` with
overlap 2; a few are already labelled by both (so Agreement has figures), submitted, approved,
and frozen into version 1. Four eyes: `researcher` writes the examples, `reviewer` approves them
(nobody approves their own). Idempotent: a project that exists is left as it is.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from r1lab.curation.models import CurationProject
from r1lab.curation.services.examples import example_create, example_review, example_submit, label_save
from r1lab.curation.services.projects import project_create, project_set_annotators
from r1lab.curation.services.versions import dataset_version_freeze

PROJECT = "Cold start · arithmetic (demo)"


def _examples() -> list[dict]:
    rows = []
    for i in range(1, 37):
        a, b = 3 * i + 4, 7 + (i % 9)
        gold = str(a * b)
        reasoning = f"We need ${a} \\times {b}$. Split it: ${a} \\times {b} = {a} \\times {b - 5} + {a} \\times 5 = {a * (b - 5)} + {a * 5}$, which is {a * b}."
        summary = f"$\\boxed{{{gold}}}$"
        tags = ["multiplication"]
        if i % 4 == 1:  # reflection
            reasoning += f" Wait, let me re-check with the other split: ${b} \\times {a} = {b * a}$. Yes, it matches."
            tags.append("reflection")
        if i % 5 == 2:  # language mixing
            reasoning = reasoning.replace("Split it", "先拆开 split it").replace("which is", "所以 which is")
            tags.append("language-mixing")
        if i % 6 == 3:  # wrong answer
            summary = f"$\\boxed{{{a * b + 10}}}$"
            tags.append("wrong-answer")
        if i == 7:  # untrusted text is shown as text, never run
            reasoning += " The model also wrote <script>alert('x')</script> and <img src=x onerror=alert(1)>, shown as text."
        rows.append({"prompt": f"What is ${a} \\times {b}$? Show your reasoning.", "reasoning": reasoning, "summary": summary,
                     "gold_answer": gold, "tags": tags})
    return rows


def seed(*, stdout, first_run: bool) -> None:
    if CurationProject.objects.filter(name=PROJECT).exists():
        stdout.write("curation: demo project exists already.")
        return
    User = get_user_model()
    users = {u.username: u for u in User.objects.filter(username__in=["annotator", "reviewer", "researcher"])}
    annotator, reviewer = users.get("annotator"), users.get("reviewer")
    lead = reviewer or users.get("researcher")
    author = users.get("researcher") or annotator or lead  # not the reviewer, who approves some
    with transaction.atomic():
        project = project_create(
            name=PROJECT, user=lead, overlap=2, target_language="en",
            description="Readable long-CoT arithmetic for the cold-start SFT stage. Fix language mixing, keep reflections that help.",
        )
        examples = [
            example_create(project=project, user=author, source="imported", language="en", **row) for row in _examples()
        ]
        if annotator is None or reviewer is None:
            stdout.write("curation: demo project created (no annotator/reviewer users to assign).")
            return
        project_set_annotators(project=project, users=[annotator, reviewer])
        for n, ex in enumerate(examples[:8]):
            label_save(example=ex, user=annotator, values={"quality": str(4 + n % 2), "readability": "4", "language_consistent": "yes" if n % 5 != 1 else "no", "correct": "yes" if n % 6 != 2 else "no"})
            label_save(example=ex, user=reviewer, values={"quality": str(3 + n % 3), "readability": str(3 + n % 2), "language_consistent": "yes" if n % 5 != 1 else "no", "correct": "yes"})
            example_submit(example=ex, user=annotator)
            ex = example_submit(example=ex, user=reviewer)
            if n < 4 and ex.accuracy == 1.0:
                example_review(example=ex, user=reviewer, decision="approve", comment="clean")
        dataset_version_freeze(project=project, user=reviewer, note="demo: first approved examples")
    stdout.write(f"curation: demo project with {len(examples)} examples, assigned to annotator and reviewer.")
