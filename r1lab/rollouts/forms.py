"""Forms: the rollout filters (GET), send-to-curation, spot-check and freeze (POST)."""
from __future__ import annotations

from django import forms

TRI = [("", "any"), ("1", "yes"), ("0", "no")]
SORTS = [("", "group order"), ("-advantage", "advantage ↓"), ("advantage", "advantage ↑"), ("-length", "length ↓"), ("length", "length ↑")]


def _tri(value: str | None) -> bool | None:
    return {"1": True, "0": False}.get(value or "")


class RolloutFilterForm(forms.Form):
    """The filters of the rollout browser; `.filters()` gives tracking.selectors.samples_filter kwargs."""

    correct = forms.ChoiceField(choices=[("", "any"), ("1", "correct"), ("0", "incorrect")], required=False)
    zero_std = forms.ChoiceField(choices=TRI, required=False, label="zero-variance group")
    truncated = forms.ChoiceField(choices=TRI, required=False)
    mixed = forms.ChoiceField(choices=TRI, required=False, label="language-mixed")
    reflection = forms.ChoiceField(choices=TRI, required=False, label="has reflection")
    len_min = forms.IntegerField(required=False, min_value=0, label="length ≥")
    len_max = forms.IntegerField(required=False, min_value=0, label="length ≤")
    reward_min = forms.FloatField(required=False, label="reward ≥")
    reward_max = forms.FloatField(required=False, label="reward ≤")
    q = forms.CharField(required=False, max_length=200, label="text")
    sort = forms.ChoiceField(choices=SORTS, required=False)

    def clean(self):
        data = super().clean()
        for lo, hi in (("len_min", "len_max"), ("reward_min", "reward_max")):
            if data.get(lo) is not None and data.get(hi) is not None and data[lo] > data[hi]:
                self.add_error(hi, "must not be below the lower bound")
        return data

    def filters(self) -> dict:
        d = self.cleaned_data
        return {
            "correct": _tri(d.get("correct")), "zero_std": _tri(d.get("zero_std")), "truncated": _tri(d.get("truncated")),
            "language_mixed": _tri(d.get("mixed")), "has_reflection": _tri(d.get("reflection")),
            "length_min": d.get("len_min"), "length_max": d.get("len_max"),
            "reward_min": d.get("reward_min"), "reward_max": d.get("reward_max"), "text": (d.get("q") or "").strip() or None,
        }

    def active(self) -> bool:
        return any(v is not None for v in self.filters().values())

    @property
    def order(self) -> str | None:
        return self.cleaned_data.get("sort") or None


class RSRowFilterForm(RolloutFilterForm):
    """The same filters over a rejection-sampling stage's rows, plus kept / removed and the reason."""

    zero_std = None  # no GRPO groups in a rejection-sampling set
    view = forms.ChoiceField(choices=[("kept", "kept"), ("removed", "removed")], required=False)
    reason = forms.CharField(required=False, max_length=20)


class SendToCurationForm(forms.Form):
    project = forms.IntegerField(required=False)  # empty: the "Rollout drafts" project
    next = forms.CharField(required=False, max_length=2000)


class SpotCheckForm(forms.Form):
    size = forms.IntegerField(min_value=1, max_value=1000, initial=50)


class SpotMarkForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("good", "good"), ("bad", "bad"), ("", "clear")], required=False)
    note = forms.CharField(required=False, max_length=500)


class FreezeForm(forms.Form):
    note = forms.CharField(required=False, max_length=300)


LINEAGE_CLASSES = ["learned", "forgotten", "always", "never", "mixed", "zero_variance"]


class LineageForm(forms.Form):
    """The prompt-lineage table: a class (or zero-variance), a sort key ("-" descending), a page."""

    cls = forms.ChoiceField(choices=[("", "all"), *[(c, c) for c in LINEAGE_CLASSES]], required=False)
    sort = forms.CharField(required=False, max_length=20)
    offset = forms.IntegerField(required=False, min_value=0)

    def clean_sort(self):
        from r1lab.rollouts.selectors import LINEAGE_SORTS

        sort = self.cleaned_data.get("sort") or "class"
        if sort.lstrip("-") not in LINEAGE_SORTS:
            raise forms.ValidationError(f"sort by one of {', '.join(LINEAGE_SORTS)} (a leading - for descending)")
        return sort


class LineageExportForm(forms.Form):
    cls = forms.ChoiceField(choices=[(c, c) for c in LINEAGE_CLASSES])
    name = forms.CharField(required=False, max_length=180)
