from django import forms
from django.core.validators import URLValidator, validate_email

from r1lab.tracking.models import AlertKind, AlertSettings


class CommentForm(forms.Form):
    step = forms.IntegerField(min_value=0)
    body = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))


class NotesForm(forms.Form):
    notes = forms.CharField(max_length=20000, required=False, widget=forms.Textarea(attrs={"rows": 4}))


class AlertSettingsForm(forms.ModelForm):
    """A project's alarm settings (AlertSettings): where alarms go, which notify, their thresholds.
    Bad input (a non-http(s) URL, a bad address, a threshold out of range) changes nothing."""

    kinds = forms.MultipleChoiceField(choices=AlertKind.choices, required=False, widget=forms.CheckboxSelectMultiple,
                                      label="Alarms that notify")
    webhook_url = forms.URLField(required=False, max_length=1000, assume_scheme="https",
                                 validators=[URLValidator(schemes=["http", "https"])],
                                 help_text="a Slack-compatible incoming webhook (Slack, Mattermost, Discord's /slack, …)")
    emails = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="addresses, one per line or comma-separated (at most 20)")

    class Meta:
        model = AlertSettings
        fields = ["webhook_url", "emails", "kinds", "step_window", "entropy_collapse_frac", "zero_std_frac",
                  "length_rise_frac", "accuracy_flat_abs", "language_mixing_rise", "stale_after_s"]

    RANGES = {"entropy_collapse_frac": (0.0, 1.0), "zero_std_frac": (0.0, 1.0), "length_rise_frac": (0.0, 100.0),
              "accuracy_flat_abs": (0.0, 1.0), "language_mixing_rise": (0.0, 1.0)}

    def clean_emails(self):
        addresses = [a.strip() for a in self.cleaned_data["emails"].replace(",", "\n").splitlines() if a.strip()]
        if len(addresses) > 20:
            raise forms.ValidationError("at most 20 addresses")
        for a in addresses:
            try:
                validate_email(a)
            except forms.ValidationError:
                raise forms.ValidationError(f"{a[:80]!r} is not an e-mail address") from None
        return "\n".join(addresses)

    def clean_step_window(self):
        v = self.cleaned_data["step_window"]
        if v < 1 or v > 10**9:
            raise forms.ValidationError("between 1 and 1,000,000,000 steps")
        return v

    def clean_stale_after_s(self):
        v = self.cleaned_data["stale_after_s"]
        if v < 30 or v > 30 * 86400:
            raise forms.ValidationError("between 30 s and 30 days")
        return v

    def clean(self):
        data = super().clean()
        for name, (lo, hi) in self.RANGES.items():
            v = data.get(name)
            if v is not None and not (lo < v <= hi if name != "accuracy_flat_abs" else lo <= v <= hi):
                self.add_error(name, f"must be in ({lo:g}, {hi:g}]" if name != "accuracy_flat_abs" else f"must be in [{lo:g}, {hi:g}]")
        return data
