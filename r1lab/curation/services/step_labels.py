"""Step labels (issue 18): one annotator's verdicts on the steps of an example's reasoning.

The editor shows the steps of the text at some version; its fields are indexed by step. A save
names that version and the split's digest: the server splits that revision's reasoning again by
the project's rule and refuses the save when the steps are not the ones shown (the rule changed
in between). Verdicts are then stored by step text (steps.entries_from), so they survive edits
of the other steps; verdicts on steps that no longer exist are dropped by the annotator's save.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from r1lab.curation import steps as step_rules
from r1lab.curation.models import Example, Revision, StepLabel


@dataclass
class StepValues:
    """What the editor posted: the version and digest its steps came from, labels and notes by index."""

    version: int
    digest: str
    labels: dict[int, str] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_post(cls, post) -> "StepValues | None":
        """The editor's `steps_version`, `steps_digest`, `step_<i>`, `step_note_<i>` fields; None when
        the form has no steps (an empty reasoning). Malformed fields are a ValidationError."""
        if "steps_digest" not in post:
            return None
        try:
            version = int(post.get("steps_version", ""))
        except ValueError:
            raise ValidationError("Steps: the version they were shown at is missing; reload the page.") from None
        values = cls(version=version, digest=post.get("steps_digest", ""))
        for name, value in post.items():
            if name.startswith("step_note_"):
                index, target = name[len("step_note_"):], values.notes
            elif name.startswith("step_") and name != "steps_version":
                index, target = name[len("step_"):], values.labels
            else:
                continue
            if not index.isdigit() or len(index) > 4:
                raise ValidationError(f"Steps: {name!r} is not a step field.")
            target[int(index)] = value if isinstance(value, str) else ""
        return values


def step_labels_save(*, example: Example, user, values: StepValues) -> StepLabel | None:
    """Store `user`'s verdicts; nothing is written when one is invalid. No verdict and no note at
    all: the annotator's step labels of this example are removed (None)."""
    revision = Revision.objects.filter(example_id=example.pk, number=values.version).only("reasoning").first()
    if revision is None:
        raise ValidationError(f"Steps: version {values.version} of this example does not exist.")
    split = step_rules.split_steps(revision.reasoning, example.project.step_split)
    if split.digest != values.digest:
        raise ValidationError("The steps changed since this page was opened (the project's split rule was changed): "
                              "reload the page and label them again.")
    problems = []
    count = len(split.steps)
    for index, label in values.labels.items():
        if index >= count:
            problems.append(f"step {index + 1} does not exist (there are {count})")
        elif label not in ("", *step_rules.LABELS):
            problems.append(f"step {index + 1}: {label[:40]!r} is not one of {', '.join(step_rules.LABELS)}")
    for index, note in values.notes.items():
        if index >= count:
            problems.append(f"step {index + 1} does not exist (there are {count})")
        elif len(note) > step_rules.MAX_NOTE:
            problems.append(f"step {index + 1}: the note is longer than {step_rules.MAX_NOTE} characters")
    if problems:
        raise ValidationError([f"Steps: {p}." for p in problems])
    notes = {i: n.strip() for i, n in values.notes.items() if n.strip()}
    labels = {i: label for i, label in values.labels.items() if label}
    if not labels and not notes:
        StepLabel.objects.filter(example_id=example.pk, annotator=user).delete()
        return None
    entries = step_rules.entries_from(split, labels, notes)
    step_label, _ = StepLabel.objects.update_or_create(
        example_id=example.pk, annotator=user, defaults={"rule": split.used, "version": values.version, "entries": entries},
    )
    return step_label
