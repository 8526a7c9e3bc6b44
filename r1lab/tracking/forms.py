from django import forms


class CommentForm(forms.Form):
    step = forms.IntegerField(min_value=0)
    body = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))


class NotesForm(forms.Form):
    notes = forms.CharField(max_length=20000, required=False, widget=forms.Textarea(attrs={"rows": 4}))
