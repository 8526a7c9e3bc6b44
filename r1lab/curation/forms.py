from __future__ import annotations

import json
import re

from django import forms
from training_backend.rewards.language import LANGUAGES as SUPPORTED_LANGUAGES

from r1lab.curation import labels, steps
from r1lab.curation.models import Example


LICENSE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    target_language = forms.ChoiceField(
        choices=[(code, code) for code in SUPPORTED_LANGUAGES], initial="en",
        help_text="the language the reasoning must be written in (the language-consistency check knows these)",
    )
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=1, help_text="annotators per example")
    label_schema = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "class": "mono"}), required=False,
        help_text='JSON list of questions: {"key", "question", "type": scale|bool|choice|text, "min"/"max" or "choices"}',
    )
    step_split = forms.ChoiceField(
        choices=steps.RULE_CHOICES, initial=steps.AUTO, required=False, label="Split the reasoning into steps by",
        help_text="for step labels; changing it re-cuts every example, and verdicts on steps that are no longer cut the same way no longer apply",
    )
    license = forms.CharField(
        max_length=64, required=False, label="Licence of the data",
        help_text="written into exported dataset cards: a Hugging Face licence id such as cc-by-4.0 or apache-2.0 (blank: unknown)",
    )
    rs_one_person_freeze = forms.BooleanField(
        required=False, label="One person may spot-check and freeze a rejection-sampled set",
        help_text="off (the default): whoever judged the spot-check cannot also freeze the set; another reviewer must (four eyes)",
    )

    def clean_step_split(self):
        return self.cleaned_data["step_split"] or None  # not sent: auto for a new project, unchanged for an existing one

    def clean_license(self):
        value = self.cleaned_data["license"].strip()
        if value and not LICENSE_RE.match(value):
            raise forms.ValidationError("A licence id is lowercase letters, digits, '.', '-' and '+' (e.g. cc-by-4.0).")
        return value

    def clean_label_schema(self):
        raw = self.cleaned_data["label_schema"].strip()
        if not raw:
            return None
        return labels.schema_validate(raw)


class ProjectSettingsForm(ProjectForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["name"]
        self.fields["label_schema"].required = True

    def clean_label_schema(self):
        return labels.schema_validate(self.cleaned_data["label_schema"])


class ImportForm(forms.Form):
    file = forms.FileField(help_text=".jsonl, .csv, .parquet, or a datasets save_to_disk folder as .zip / .tar.gz; or a .zip of a "
                                     "dataset version exported as a Hugging Face folder or as Argilla records (docs/datasets.md)")


class EditorForm(forms.Form):
    based_on = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    reasoning = forms.CharField(widget=forms.Textarea, required=False, strip=False, max_length=200_000)
    summary = forms.CharField(widget=forms.Textarea, required=False, strip=False, max_length=200_000)
    action = forms.ChoiceField(choices=[("save", "save"), ("submit", "submit")], initial="save")


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=5000)
    # The version the reviewer looked at (the editor sends it): a decision on a newer one is refused.
    version = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)


class ChecksForm(forms.Form):
    reasoning = forms.CharField(required=False, strip=False, max_length=200_000)
    summary = forms.CharField(required=False, strip=False, max_length=200_000)


def schema_as_text(schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False)


STATUS_CHOICES = [("", "any status")] + [(s, s) for s in Example.Status.values]
SOURCE_CHOICES = [("", "any source")] + [(s, s) for s in Example.Source.values]
