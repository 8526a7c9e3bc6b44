"""Why a curation write was refused; nothing was written when one is raised."""
from __future__ import annotations

from django.core.exceptions import ValidationError

from r1lab.curation.models import Example


class EditConflict(Exception):
    """The example changed since the version the editor was based on; nothing was written."""

    def __init__(self, *, example: Example, based_on: int, mine: dict):
        super().__init__(f"example {example.pk} is at version {example.version}, the save was based on {based_on}")
        self.example = example
        self.based_on = based_on
        self.mine = mine


class TransitionError(ValidationError):
    """A status change from a state that does not allow it (an example's review, an import's start)."""


class FourEyesError(ValidationError):
    """The reviewer wrote or last edited the example (or spot-checked the set they freeze)."""
