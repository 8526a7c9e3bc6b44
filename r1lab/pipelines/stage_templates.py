"""Pipeline templates: each is a list of stage definitions (a kind, inputs, config overrides).

Stage kinds are the trainer's: the keys of `training_backend.config.STAGE_CONFIGS` (each with its
frozen config dataclass), plus `make_base`, which runs `python -m training_backend make-base` to
build the tiny demo base model on a worker. A template whose kinds the installed
training_backend does not have yet is listed as unavailable, with the missing kinds named; it
becomes available as soon as config.py registers them, with no change here.

Inputs of a stage definition:
- `model`: "base" (the run's base model) or "stage:<i>" (stage i's final checkpoint);
- `data`: "prompt_set" (the run's prompt set, its eval split as eval data), "dataset_version"
  (a curated dataset version's export), or "stage:<i>" (stage i's output dataset).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from training_backend.config import STAGE_CONFIGS

MAKE_BASE = "make_base"


@dataclass(frozen=True)
class StageDef:
    kind: str
    name: str
    model: str = "base"
    data: str = "prompt_set"
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineTemplate:
    key: str
    label: str
    description: str
    stages: tuple[StageDef, ...]

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self.stages]

    def missing_kinds(self) -> list[str]:
        return sorted({k for k in self.kinds if k not in known_kinds()})

    @property
    def available(self) -> bool:
        return not self.missing_kinds()

    @property
    def needs_prompt_set(self) -> bool:
        return any(s.data == "prompt_set" for s in self.stages)

    @property
    def needs_dataset_version(self) -> bool:
        return any(s.data == "dataset_version" for s in self.stages)


def known_kinds() -> set[str]:
    return set(STAGE_CONFIGS) | {MAKE_BASE}


TEMPLATES: dict[str, PipelineTemplate] = {
    t.key: t
    for t in (
        PipelineTemplate(
            "r1_zero", "R1-Zero",
            "GRPO straight from the base model with rule rewards only (accuracy + format), prompts in the "
            "raw R1-Zero template (no chat markup).",
            (StageDef("grpo", "GRPO from the base (R1-Zero)", model="base", data="prompt_set",
                      overrides={"reward_funcs": ["accuracy", "format"], "prompt_format": "r1_zero"}),),
        ),
        PipelineTemplate(
            "r1", "R1",
            "Cold-start SFT → reasoning GRPO → rejection sampling + SFT → all-scenario GRPO.",
            (
                StageDef("sft", "Cold-start SFT", model="base", data="dataset_version"),
                StageDef("grpo", "Reasoning GRPO", model="stage:0", data="prompt_set"),
                StageDef("rejection_sampling", "Rejection sampling", model="stage:1", data="prompt_set"),
                StageDef("sft", "SFT on rejection-sampled + general data", model="base", data="stage:2"),
                StageDef("grpo", "All-scenario GRPO", model="stage:3", data="prompt_set"),
            ),
        ),
        PipelineTemplate(
            "distill", "Distill", "SFT of a small student on the teacher's rejection-sampled set.",
            (StageDef("sft", "Distillation SFT of the student", model="base", data="dataset_version"),),
        ),
        PipelineTemplate(
            "eval", "Eval", "pass@1 averaged over k samples per prompt, cons@k majority vote.",
            (StageDef("eval", "Evaluate", model="base", data="prompt_set"),),
        ),
    )
}


def custom_template(kinds: list[str]) -> PipelineTemplate:
    """A chain of stage kinds: each stage starts from the previous stage's checkpoint."""
    stages = []
    for i, kind in enumerate(kinds):
        data = "dataset_version" if kind == "sft" else "prompt_set"
        stages.append(StageDef(kind, f"{kind} #{i + 1}", model="base" if i == 0 else f"stage:{i - 1}", data=data))
    return PipelineTemplate("custom", "Custom", "A chain of stages of your choice.", tuple(stages))


def get_template(key: str, *, custom_kinds: list[str] | None = None) -> PipelineTemplate:
    if key == "custom":
        return custom_template(custom_kinds or [])
    return TEMPLATES[key]
