"""Fork at step k, for real: a GRPO stage trained by the trainer (its CLI, in this process, on a
tiny random model), forked at its checkpoint k with an edited config; the fork's attempt goes
through the worker's side (attempts.py, runner.write_spec) and the trainer again, and what both
report is replayed into their tracked runs through the ingest services, as the HTTP reporter
would send it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from r1lab.pipelines import attempts, runner, selectors, services
from r1lab.pipelines.stage_templates import custom_template
from r1lab.pipelines.state_machine import PipelineValidationError
from r1lab.tracking.ingest import parse_log_body
from r1lab.tracking.models import Point, Rewind
from r1lab.tracking.selectors import compare_data
from r1lab.tracking.services import tracked_run_log, tracked_run_rewind
from tests.factories import UserFactory
from tests.pipelines.factories import BaseModelFactory, PromptSetFactory
from tests.training_backend.test_trainer import digits, make_model  # noqa: F401 (digits: the reward fixture)
from training_backend import stage as contract
from training_backend import tiny
from training_backend.__main__ import main as trainer_main

pytestmark = pytest.mark.django_db

# `digits` varies inside a group on random weights: real advantages, real updates, so the weights
# at a checkpoint differ from the base model's and from each other step's.
TINY = dict(num_generations=4, batch_size=8, max_completion_length=12, max_prompt_length=16, learning_rate=1e-3,
            beta=0.04, reward_funcs=["format", "digits"], save_steps=1, save_total_limit=2, log_samples=-1,
            engine="torch", torch_threads=1, max_steps=3, eval_steps=0)


def run_attempt(stage) -> tuple[int, list[dict], attempts.AttemptStart]:
    """One attempt of `stage` as a worker runs it, the trainer in this process; what the trainer
    reported (its JSONL) is replayed into the stage's tracked run."""
    stage.refresh_from_db()
    start = attempts.stage_attempt_start(stage_id=stage.pk, attempt=stage.attempt, worker_host="h", worker_pid=1)
    Path(start.attempt_dir).mkdir(parents=True, exist_ok=True)
    spec = runner.write_spec(start)
    jsonl = Path(start.attempt_dir) / "metrics.jsonl"
    rc = trainer_main(["run", str(spec), "--metrics-out", str(jsonl)] + (["--resume"] if start.resume else []))
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    replay(start.tracked_run_id, lines)
    attempts.stage_attempt_finish(stage_id=stage.pk, attempt=start.attempt, exit_code=rc,
                                  outputs=contract.read_outputs(start.output_dir), signalled_cancel=False)
    return rc, lines, start


def replay(run_id: int, lines: list[dict]) -> None:
    from r1lab.tracking.models import Run

    run = Run.objects.get(pk=run_id)
    metrics, samples = [], []
    for line in lines:
        if "rewind" in line:
            tracked_run_rewind(run=run, after_step=line["rewind"])
        elif "key" in line and line["value"] is not None:
            metrics.append({"step": line["step"], "key": line["key"], "value": line["value"]})
        elif "sample" in line:
            samples.append({"step": line["step"], **{k: v for k, v in line["sample"].items() if v is not None}})
    tracked_run_log(run_id=run_id, parsed=parse_log_body(json.dumps({"metrics": metrics, "samples": samples}).encode()))


def completions(lines: list[dict], step: int) -> list[str]:
    return [x["sample"]["completion"] for x in lines if "sample" in x and x["step"] == step]


@pytest.fixture
def parent(tmp_path, settings):
    """A finished GRPO stage of 3 steps, a checkpoint each step, rotation keeping the last 2."""
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    model = make_model(tmp_path / "base")
    train = tmp_path / "prompts.jsonl"
    tiny.write_jsonl(tiny.arithmetic_prompts(6, seed=3), train)
    base = BaseModelFactory(path=str(model))
    prompts = PromptSetFactory(train_path=str(train), train_count=6)
    user = UserFactory(role="researcher")
    tpl = custom_template(["grpo"])
    plans = services.pipeline_plan(template=tpl, configs=[dict(TINY)], base_model=base, prompt_set=prompts)
    run = services.pipeline_run_create(name="parent", template_key="custom", plans=plans, user=user, base_model=base,
                                       prompt_set=prompts)
    services.pipeline_run_launch(run=run, user=user)
    stage = run.stages.get()
    rc, lines, _ = run_attempt(stage)
    assert rc == 0
    stage.refresh_from_db()
    return stage, user, lines


def test_fork_starts_at_k_plus_1_with_the_edited_config_and_the_parents_checkpoint(parent, client_as):
    stage, user, parent_lines = parent
    assert [(c.step, c.on_disk) for c in selectors.stage_checkpoints(stage)] == [(1, False), (2, True), (3, True)]  # kept 2
    plan = services.stage_fork_plan(parent=stage, step=2, config={**stage.config, "learning_rate": 0.05, "max_steps": 4})
    fork_run = services.stage_fork(parent=stage, step=2, plan=plan, name="lr 0.05 from step 2", user=user)
    fork = fork_run.stages.get()
    assert fork.config["learning_rate"] == 0.05 and fork.status == "queued"
    parent_ckpt = contract.checkpoint_path(stage.output_dir, 2)
    snapshot = services.fork_snapshot_path(fork, 2)
    assert os.stat(snapshot / "model.safetensors").st_ino == os.stat(parent_ckpt / "model.safetensors").st_ino  # linked
    shutil.rmtree(parent_ckpt)  # the parent's rotation deletes it before the fork starts: the fork has its own

    rc, lines, start = run_attempt(fork)
    assert rc == 0 and start.resume and start.model_path == stage.resolved_inputs["model"]["path"]  # reference: the parent's
    assert start.train_data == stage.resolved_inputs["train_data"]["path"]
    assert [x["rewind"] for x in lines if "rewind" in x] == [2]
    assert sorted({x["step"] for x in lines if "key" in x}) == [3, 4]  # the fork's curve starts at k + 1
    assert {x["value"] for x in lines if x.get("key") == "learning_rate"} == {0.05}  # the edited config, not the checkpoint's
    # step 3 sampled from the weights of the parent's checkpoint 2, with the same seeds: the parent's step 3 rollouts
    assert completions(lines, 3) == completions(parent_lines, 3) and completions(lines, 3)
    fork.refresh_from_db()
    assert fork.status == "succeeded" and fork.resolved_inputs["checkpoint"]["step"] == 2

    # the fork's tracked run is its own; the parent's was never rewound and keeps its steps 1-3
    parent_run, fork_tracked = stage.tracked_run, fork.tracked_run
    assert (fork_tracked.forked_from_id, fork_tracked.forked_at_step) == (parent_run.pk, 2)
    assert not Rewind.objects.filter(run=parent_run).exists() and not Rewind.objects.filter(run=fork_tracked).exists()
    steps = lambda run: sorted(set(Point.objects.filter(series__run=run, series__key="reward").values_list("step", flat=True)))  # noqa: E731
    assert steps(parent_run) == [1, 2, 3] and steps(fork_tracked) == [3, 4]
    # compared, the fork branches off the parent's curve at step 2 (the parent drawn whole)
    data = compare_data(user=user, run_ids=[parent_run.pk, fork_tracked.pk], metrics=["reward"])
    parent_x, fork_x = (s["series"]["reward"]["x"] for s in data["series"])
    assert parent_x == [1, 2, 3] and fork_x == [2, 3, 4]
    assert data["series"][1]["series"]["reward"]["y"][0] == data["series"][0]["series"]["reward"]["y"][1]
    from django.urls import reverse

    page = client_as("viewer").get(reverse("tracking:run", args=[fork_tracked.pk])).content.decode()
    assert "data-forked-from" in page and f"?runs={parent_run.pk},{fork_tracked.pk}" in page

    # lineage: the fork names its parent's checkpoint, the parent lists its fork
    _, edges = selectors.run_lineage(fork_run)
    assert any(e.dst == "stage-0" and e.label == "forked at step 2: checkpoint" for e in edges)
    nodes, edges = selectors.run_lineage(stage.run)
    assert any(n.kind == "fork" and n.label == "lr 0.05 from step 2" for n in nodes)
    assert any(e.src == "stage-0" and e.label == "fork at step 2" for e in edges)


@pytest.fixture
def finished_stage(tmp_path, settings):
    """A succeeded GRPO stage whose output folder holds complete checkpoints of steps 2 and 3 (step 1
    rotated away), written by hand: what stage_fork_plan reads is the disk."""
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    base = BaseModelFactory(path=str(tmp_path))
    prompts = PromptSetFactory(train_path=str(tmp_path / "p.jsonl"))
    user = UserFactory(role="researcher")
    plans = services.pipeline_plan(template=custom_template(["grpo"]), configs=[dict(TINY)], base_model=base,
                                   prompt_set=prompts, check_paths=False)
    run = services.pipeline_run_create(name="parent", template_key="custom", plans=plans, user=user, base_model=base,
                                       prompt_set=prompts)
    stage = run.stages.get()
    stage.output_dir = str(tmp_path / "out")
    stage.outputs = {"step": 3, "checkpoints": [str(contract.checkpoint_path(stage.output_dir, s)) for s in (2, 3)]}
    stage.save()
    for step in (2, 3):
        folder = contract.checkpoint_path(stage.output_dir, step)
        folder.mkdir(parents=True)
        (folder / contract.TRAINER_STATE).write_text(json.dumps({"step": step}))
    contract.checkpoint_path(stage.output_dir, 4).with_suffix(".tmp").mkdir()  # a save cut short: no checkpoint
    return stage


def test_a_fork_is_refused_where_rotation_deleted_the_checkpoint_or_the_config_cannot_continue_it(finished_stage):
    stage = finished_stage
    assert [(c.step, c.on_disk) for c in selectors.stage_checkpoints(stage)] == [(1, False), (2, True), (3, True)]
    for step in (1, 4):
        with pytest.raises(PipelineValidationError) as exc:
            services.stage_fork_plan(parent=stage, step=step, config=dict(stage.config))
        assert f"no checkpoint of step {step} on disk" in exc.value.errors["step"] and "forked: 2, 3" in exc.value.errors["step"]
    with pytest.raises(PipelineValidationError) as exc:
        services.stage_fork_plan(parent=stage, step=2, config={**stage.config, "engine": "deepspeed", "max_steps": 2,
                                                               "learning_rate": "fast"})
    assert set(exc.value.errors) == {"s0-learning_rate"}  # the config parses first
    with pytest.raises(PipelineValidationError) as exc:
        services.stage_fork_plan(parent=stage, step=2, config={**stage.config, "engine": "deepspeed", "max_steps": 2})
    assert "stays 'torch'" in exc.value.errors["s0-engine"] and "more than 2" in exc.value.errors["s0-max_steps"]
    from r1lab.pipelines.models import PipelineRun

    assert PipelineRun.objects.count() == 1  # nothing made


# --- the pages: checkpoints list and chart markers, the fork form ------------------------------------


def fork_url(stage, step):
    from django.urls import reverse

    return reverse("pipelines:stage_fork", args=[stage.run_id, stage.pk]) + (f"?step={step}" if step is not None else "")


def test_run_page_lists_the_checkpoints_and_marks_them_on_the_chart(client_as, finished_stage):
    import html as htmllib

    from django.urls import reverse

    from r1lab.tracking.services import tracked_run_create

    stage = finished_stage
    stage.tracked_run = tracked_run_create(name="parent · grpo")[0]
    stage.save()
    page = client_as("researcher").get(reverse("pipelines:detail", args=[stage.run_id])).content.decode()
    assert f'href="{fork_url(stage, 2)}" data-fork-step="2"' in page and 'data-fork-step="3"' in page
    assert 'data-checkpoint="1"' in page and "deleted by rotation (save_total_limit): cannot be forked" in page
    assert 'data-fork-step="1"' not in page
    markers = json.loads(htmllib.unescape(page.split('data-step-markers="', 1)[1].split('"', 1)[0]))
    assert markers == [{"step": 2, "label": "checkpoint 2", "url": fork_url(stage, 2)},
                       {"step": 3, "label": "checkpoint 3", "url": fork_url(stage, 3)}]
    viewer_page = client_as("viewer").get(reverse("pipelines:detail", args=[stage.run_id])).content.decode()
    assert "data-fork-step" not in viewer_page and '&quot;url&quot;: &quot;&quot;' in viewer_page  # markers, no fork links


def test_fork_form_is_prefilled_with_the_parent_and_marks_what_differs(client_as, finished_stage):
    from django.urls import reverse

    from r1lab.pipelines.models import PipelineRun

    stage = finished_stage
    client = client_as("researcher")
    r = client.get(fork_url(stage, 2))
    assert r.status_code == 200 and r.context["diffs"] == {}
    form = r.context["form"]
    assert form["s0-learning_rate"].value() == "0.001" and form["s0-reward_funcs"].value() == "format, digits"
    assert form["prompt_set"].value() == stage.inputs["train_data"]["id"] and "base_model" not in form.fields
    data = {k: ("on" if v is True else v) for k, v in ((bf.html_name, bf.value()) for bf in form) if v not in (None, False)}
    data.update({"step": "2", "s0-learning_rate": "0.05", "s0-max_steps": "2", "s0-reward_funcs": "format,digits"})
    r = client.post(fork_url(stage, None), data)
    assert r.status_code == 200  # max_steps 2 <= the fork step: refused, nothing made
    assert "more than 2" in r.content.decode() and PipelineRun.objects.count() == 1
    assert r.context["diffs"] == {"s0-learning_rate": "0.001", "s0-max_steps": "3"}  # the list written without a space is the same
    assert 'class="field differs" data-field="learning_rate" data-parent-value="0.001"' in r.content.decode()

    data["s0-max_steps"] = "5"
    r = client.post(fork_url(stage, None), data)
    fork = PipelineRun.objects.exclude(pk=stage.run_id).get()
    assert r.status_code == 302 and r["Location"] == reverse("pipelines:detail", args=[fork.pk])
    fstage = fork.stages.get()
    assert (fstage.config["learning_rate"], fstage.config["max_steps"], fstage.status) == (0.05, 5, "queued")
    assert fstage.inputs["checkpoint"] == {"from": "checkpoint", "stage_id": stage.pk, "step": 2}
    assert (services.fork_snapshot_path(fstage, 2) / contract.TRAINER_STATE).exists()
    page = client.get(r["Location"]).content.decode()
    assert "data-fork-of" in page and "forked at step 2: checkpoint" in page


def test_fork_of_a_rotated_or_unknown_step_is_refused_with_a_message_and_viewers_get_403(client_as, finished_stage):
    stage = finished_stage
    for step in ("1", "9", "x"):
        r = client_as("researcher").get(fork_url(stage, step), follow=True)
        assert "steps that can be forked: 2, 3" in r.content.decode()
    assert client_as("viewer").get(fork_url(stage, 2)).status_code == 403


def test_every_attempt_of_a_fork_resumes_a_retry_from_the_snapshot_again(finished_stage):
    from r1lab.pipelines.models import Stage

    stage = finished_stage
    user = UserFactory(role="researcher")
    plan = services.stage_fork_plan(parent=stage, step=2, config=dict(stage.config))
    fork = services.stage_fork(parent=stage, step=2, plan=plan, name="fork", user=user).stages.get()
    # a start that linked the snapshot in, then died before its transaction committed: the link stays
    contract.link_checkpoint(services.fork_snapshot_path(fork, 2), contract.checkpoint_path(fork.output_dir, 2))
    start = attempts.stage_attempt_start(stage_id=fork.pk, attempt=1, worker_host="h", worker_pid=1)
    assert start.resume and [p.name for p in contract.checkpoint_dirs(start.output_dir)] == ["step-000002"]
    attempts.stage_attempt_finish(stage_id=fork.pk, attempt=1, exit_code=1, outputs=None, signalled_cancel=False)
    services.stage_retry(stage=Stage.objects.get(pk=fork.pk), user=user)  # from scratch: a fresh output folder
    start = attempts.stage_attempt_start(stage_id=fork.pk, attempt=2, worker_host="h", worker_pid=1)
    assert start.output_dir.endswith("output-r2") and start.resume  # the fork's start again, not the base model
    assert [p.name for p in contract.checkpoint_dirs(start.output_dir)] == ["step-000002"]
