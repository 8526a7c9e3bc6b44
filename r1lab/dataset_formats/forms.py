"""The column-mapping form both import previews show (templates/dataset_formats/_mapping.html).

The only Django module of this package: `readers` and `mapping` stay plain Python. The form offers,
for each field the import reads, the file's own columns (so a posted name that the file does not
have is refused like any bad choice), the gold-answer rule and, for a DatasetDict folder, its split.
"""
from __future__ import annotations

from django import forms

from r1lab.dataset_formats.mapping import ANSWER_RULES, COLUMN_FIELDS, FIELD_HELP, FORMATS, Mapping

LABELS = {"prompt": "prompt", "messages": "chat messages", "generations": "generations", "correct": "correct flags",
          "reasoning": "reasoning", "completion": "completion", "summary": "summary", "answer": "gold answer",
          "tests": "tests", "tests_setup": "test setup", "id": "id"}


class MappingForm(forms.Form):
    format = forms.ChoiceField(choices=list(FORMATS.items()), widget=forms.HiddenInput)

    def __init__(self, *args, target: str, columns: list[str], splits: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "(none)")] + [(c, c) for c in columns]
        for name in COLUMN_FIELDS[target]:
            self.fields[name] = forms.ChoiceField(choices=choices, required=False, label=LABELS[name],
                                                  help_text=FIELD_HELP[name])
            if name == "answer":
                self.fields["answer_rule"] = forms.ChoiceField(choices=list(ANSWER_RULES.items()),
                                                               label="gold answer is", initial="as_is")
        if splits:
            self.fields["split"] = forms.ChoiceField(choices=[(s, s) for s in splits], label="split",
                                                     help_text="the DatasetDict split to read")
        self.target = target

    @classmethod
    def for_mapping(cls, mapping: Mapping, *, target: str, file_info: dict) -> MappingForm:
        """An unbound form showing `mapping` (what was detected or last chosen)."""
        return cls(initial=mapping.to_dict(), target=target, columns=file_info.get("columns", []),
                   splits=file_info.get("splits") or None)

    def mapping(self) -> Mapping:
        data = {k: v for k, v in self.cleaned_data.items() if v is not None}
        return Mapping(**data)

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not (cleaned.get("prompt") or cleaned.get("messages")):
            raise forms.ValidationError("Choose the column that holds the prompt (or a chat messages column).")
        return cleaned
