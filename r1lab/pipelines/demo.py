"""`manage.py demo` seeding for pipelines: the tiny base model, its prompt sets and, on a fresh
start, the miniature R1-Zero run, launched so that a newcomer sees a run learning.

Nothing slow happens here: the base model is built by the run's first stage (`make_base`, on
the gpu worker, its progress shown like any stage's), not before the URL is printed. Writing
the prompt files takes one short subprocess (training_backend.tiny imports torch, which this
process must not). Idempotent: registered objects are reused and the demo run is launched once.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from r1lab.pipelines import services
from r1lab.pipelines.models import PipelineRun, PromptSet
from r1lab.pipelines.stage_templates import TEMPLATES

BASE_NAME = "tiny-base (demo)"
PROMPTS_NAME = "tiny additions (demo)"
RUN_NAME = "demo: miniature R1-Zero"
DEMO_STEPS = 120

_WRITE_PROMPTS = """
import sys
from training_backend import tiny
train, evals = tiny.demo_splits()
tiny.write_jsonl(train, sys.argv[1]); tiny.write_jsonl(evals, sys.argv[2])
print(len(train), len(evals))
"""


def _demo_prompts(folder: Path) -> tuple[Path, Path, int, int]:
    train, evals = folder / "train.jsonl", folder / "eval.jsonl"
    if not (train.exists() and evals.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        python = settings.R1LAB_TRAINER_PYTHON or sys.executable
        subprocess.run([python, "-c", _WRITE_PROMPTS, str(train), str(evals)], cwd=settings.BASE_DIR, check=True,
                       capture_output=True, timeout=300)
    count = lambda p: sum(1 for line in p.read_text().splitlines() if line.strip())  # noqa: E731
    return train, evals, count(train), count(evals)


def demo_config() -> dict:
    """The trainer's own miniature R1-Zero settings (training_backend.__main__.DEMO_CONFIG)."""
    from training_backend.__main__ import DEMO_CONFIG

    return {**DEMO_CONFIG, "max_steps": DEMO_STEPS, "engine": "torch", "eval_steps": 20, "eval_max_prompts": 64}


def seed(*, stdout, first_run: bool) -> None:
    data = Path(settings.R1LAB_DATA_DIR)
    base_path = data / "models" / "tiny-base"
    base = services.base_model_register_unbuilt(
        name=BASE_NAME, path=str(base_path), parameter_count=900_000,
        notes="~0.9M-parameter char-level Llama pretrained on synthetic additions "
              "(python -m training_backend make-base); built by the demo run's first stage.")
    stdout.write("  pipelines: writing the demo prompt sets…")
    train, evals, n_train, n_eval = _demo_prompts(data / "prompt_sets" / "demo-additions")
    prompts = PromptSet.objects.filter(name=PROMPTS_NAME).first() or services.prompt_set_register(
        name=PROMPTS_NAME, kind=PromptSet.Kind.MATH, train_path=str(train), eval_path=str(evals),
        train_count=n_train, eval_count=n_eval, source_name="training_backend.tiny.demo_splits()")
    stdout.write(f"  pipelines: base model {base.name!r} and prompt set {prompts.name!r} registered.")
    if not first_run or PipelineRun.objects.filter(name=RUN_NAME).exists():
        return
    user = get_user_model().objects.filter(username="researcher").first()
    template = TEMPLATES["r1_zero"]
    plans = services.pipeline_plan(template=template, configs=[demo_config()], base_model=base, prompt_set=prompts,
                                   build_base=not (base_path / "config.json").exists())
    run = services.pipeline_run_create(name=RUN_NAME, template_key=template.key, plans=plans, user=user,
                                       base_model=base, prompt_set=prompts,
                                       notes="Launched by `make demo`: R1-Zero on the tiny model, rule rewards only.")
    services.pipeline_run_launch(run=run, user=user)
    stdout.write(f"  pipelines: launched {RUN_NAME!r} ({len(plans)} stage{'s' if len(plans) > 1 else ''}); "
                 "the gpu worker picks it up as soon as it starts.")
