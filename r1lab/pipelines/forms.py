"""The launch form: one field per config field of each stage, generated from the trainer's own
dataclasses (training_backend.config.spec_fields), validated by them (services.pipeline_plan):
the form and the trainer can never disagree."""
from __future__ import annotations

from django import forms

from r1lab.pipelines import selectors
from r1lab.pipelines.models import PromptSet, Stage
from r1lab.pipelines.services import StagePlan, pipeline_plan, stage_fork_plan
from r1lab.pipelines.state_machine import PipelineValidationError
from r1lab.pipelines.stage_templates import MAKE_BASE, PipelineTemplate, custom_template


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _to_json(raw: str, type_name: str):
    """A text input → the JSON value the config parser expects. Values that do not convert are
    passed through as text, so the trainer's own parser names the problem."""
    optional = type_name.endswith("| None")
    base = type_name.replace(" | None", "")
    raw = (raw or "").strip()
    if raw == "" and optional:
        return None
    if base.startswith("list["):
        item = base[5:-1]
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        return [_to_json(p, item) for p in parts]
    if base == "int":
        try:
            return int(raw)
        except ValueError:
            return raw
    if base == "float":
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


class LaunchForm(forms.Form):
    name = forms.CharField(max_length=200)
    base_model = forms.ModelChoiceField(queryset=None, empty_label="— choose —")
    prompt_set = forms.ModelChoiceField(queryset=None, required=False, empty_label="— choose —")
    dataset_version = forms.TypedChoiceField(choices=(), required=False, coerce=int, empty_value=None)
    num_gpus = forms.IntegerField(min_value=1, max_value=64, initial=1,
                                  help_text="GPUs per training stage: more than one launches `deepspeed --num_gpus N`.")

    def __init__(self, *args, template: PipelineTemplate, **kwargs):
        super().__init__(*args, **kwargs)
        from training_backend.config import spec_fields

        self.template = template
        self.plans: list[StagePlan] = []
        self.fields["base_model"].queryset = selectors.base_models_for_picker()
        self.fields["base_model"].label_from_instance = lambda m: f"{m.name} — {selectors.base_model_summary(m)}"
        self.fields["prompt_set"].queryset = selectors.prompt_sets_for_picker()
        self.fields["dataset_version"].choices = [("", "— choose —"), *selectors.dataset_versions_for_picker()]
        if not template.needs_prompt_set:
            del self.fields["prompt_set"]
        if not template.needs_dataset_version:
            del self.fields["dataset_version"]
        self.stage_fields: list[tuple] = []  # (stage def, [bound fields with info])
        for i, sdef in enumerate(template.stages):
            infos = [] if sdef.kind == MAKE_BASE or sdef.kind in template.missing_kinds() else spec_fields(sdef.kind)
            names = []
            for info in infos:
                name = f"s{i}-{info.name}"
                initial = sdef.overrides.get(info.name, info.default)
                base = info.type.replace(" | None", "")
                if base == "bool":
                    field = forms.BooleanField(required=False, initial=initial)
                elif info.choices:
                    field = forms.ChoiceField(choices=[(str(c), str(c)) for c in info.choices], initial=str(initial))
                else:
                    field = forms.CharField(required=False, initial=_fmt(initial),
                                            widget=forms.TextInput(attrs={"inputmode": "decimal" if base in ("int", "float") else "text"}))
                field.label = info.name
                field.help_text = info.help
                field.r1lab_info = info
                self.fields[name] = field
                names.append(name)
            self.stage_fields.append((i, sdef, names))

    def stage_groups(self):
        """[(index, stage definition, [(bound field, info)])] for the template."""
        return [(i, sdef, [(self[n], self.fields[n].r1lab_info) for n in names]) for i, sdef, names in self.stage_fields]

    def _config_values(self) -> list[dict]:
        configs = []
        for i, sdef, names in self.stage_fields:
            cfg = {}
            for name in names:
                info = self.fields[name].r1lab_info
                raw = self.cleaned_data.get(name)
                base = info.type.replace(" | None", "")
                if base == "bool":
                    cfg[info.name] = bool(raw)
                elif info.choices:
                    match = [c for c in info.choices if str(c) == raw]
                    cfg[info.name] = match[0] if match else raw
                else:
                    cfg[info.name] = _to_json(raw, info.type)
            configs.append(cfg)
        return configs

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        prompt_set: PromptSet | None = cleaned.get("prompt_set")
        try:
            self.plans = pipeline_plan(
                template=self.template, configs=self._config_values(), base_model=cleaned.get("base_model"),
                prompt_set=prompt_set, dataset_version_id=cleaned.get("dataset_version"),
                num_gpus=cleaned.get("num_gpus") or 1)
        except PipelineValidationError as exc:
            for field, msg in exc.errors.items():
                self.add_error(field if field in self.fields else None, msg if field in self.fields else f"{field}: {msg}")
        return cleaned


class RunFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100)
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *[(s, s) for s in (
        "pending", "queued", "running", "succeeded", "failed", "cancelled")]])


class BaseModelForm(forms.Form):
    """The folder is checked by services.base_model_register (it loads it the trainer's way); here
    only what needs no model code: the name, and that the path is a folder with a config.json."""

    name = forms.CharField(max_length=200)
    path = forms.CharField(max_length=1000, help_text="a HF model folder on the workers' shared disk; r1lab loads "
                                                      "it the trainer's way and shows what it found (takes a few seconds)")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_path(self):
        from pathlib import Path

        path = self.cleaned_data["path"].strip()
        if not Path(path).is_dir():
            raise forms.ValidationError(f"{path!r} does not exist on the workers' shared disk")
        if not (Path(path) / "config.json").exists():
            raise forms.ValidationError(f"{path!r} is not a HF model folder (no config.json)")
        return path


class PromptImportForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=PromptSet.Kind.choices)
    file = forms.FileField(help_text="JSONL, CSV, Parquet, or a datasets save_to_disk folder as .zip / .tar.gz (docs/datasets.md)")
    eval_fraction = forms.FloatField(min_value=0.0, max_value=0.5, initial=0.1,
                                     help_text="share of rows held out for evaluation (seeded random split)")
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if PromptSet.objects.filter(name=name).exists():
            raise forms.ValidationError(f"a prompt set named {name!r} exists already")
        return name


def _display(value, info) -> str:
    """A config value as its form field shows it (what the diff against the parent compares)."""
    base = info.type.replace(" | None", "")
    if base == "bool":
        return "true" if value else "false"
    if info.choices:
        return str(value)
    return _fmt(value)


class ForkForm(LaunchForm):
    """The launch form of a fork of `parent` at its checkpoint `step`: one stage of the parent's
    kind, every config field prefilled with the parent's value, the data picker (when the parent's
    data was a prompt set or a dataset version) on the parent's; validated by
    services.stage_fork_plan. `diffs()` names the fields that differ from the parent."""

    def __init__(self, *args, parent: Stage, step: int, **kwargs):
        from training_backend.config import spec_fields

        self.parent, self.step, self.plan = parent, step, None
        data = (parent.inputs or {}).get("train_data") or {}
        initial = {"name": f"{parent.run.name} · fork @ {step}"[:200], "num_gpus": parent.num_gpus}
        if data.get("from") in ("prompt_set", "dataset_version"):
            initial[data["from"]] = data.get("id")
        super().__init__(*args, template=custom_template([parent.kind]), initial={**initial, **kwargs.pop("initial", {})},
                         **kwargs)
        del self.fields["base_model"]
        for picker in ("prompt_set", "dataset_version"):
            if data.get("from") != picker:
                self.fields.pop(picker, None)
        infos = {info.name: info for info in spec_fields(parent.kind)}
        self.parent_values: dict[str, str] = {}  # form field name -> the parent's value as the field shows it
        for _, _, names in self.stage_fields:
            for name in names:
                info = infos[self.fields[name].r1lab_info.name]
                if info.name in parent.config:
                    value = parent.config[info.name]
                    self.fields[name].initial = value if info.type.startswith("bool") else _display(value, info)
                self.parent_values[name] = _display(parent.config.get(info.name, info.default), info)
        for picker in ("prompt_set", "dataset_version"):
            if picker in self.fields:
                self.parent_values[picker] = str(data.get("id") or "")
        self.parent_values["num_gpus"] = str(parent.num_gpus)

    def _current(self, name: str) -> str:
        field = self.fields[name]
        if not self.is_bound:
            value = self.get_initial_for_field(field, name)
            if isinstance(field, forms.BooleanField):
                return "true" if value else "false"
            return "" if value is None else str(getattr(value, "pk", value))
        raw = self[name].value()
        if isinstance(field, forms.BooleanField):
            return "true" if raw else "false"
        text = "" if raw is None else str(raw).strip()
        info = getattr(field, "r1lab_info", None)
        if info is not None and info.type.startswith("list["):  # "a,b" is "a, b"
            text = ", ".join(p.strip() for p in text.split(",") if p.strip())
        return text

    def diffs(self) -> dict[str, str]:
        """{field name: the parent's value} of the fields whose value differs from the parent's."""
        return {name: parent for name, parent in self.parent_values.items()
                if name in self.fields and self._current(name) != parent}

    def clean(self):
        cleaned = forms.Form.clean(self)  # not LaunchForm's: a fork is planned by stage_fork_plan
        if self.errors:
            return cleaned
        try:
            self.plan = stage_fork_plan(parent=self.parent, step=self.step, config=self._config_values()[0],
                                        prompt_set=cleaned.get("prompt_set"),
                                        dataset_version_id=cleaned.get("dataset_version"),
                                        num_gpus=cleaned.get("num_gpus"))
        except PipelineValidationError as exc:
            for field, msg in exc.errors.items():
                self.add_error(field if field in self.fields else None, msg if field in self.fields else f"{field}: {msg}")
        return cleaned
