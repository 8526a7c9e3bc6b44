"""Pipelines through REAL Celery workers (subprocesses, Redis broker, the test PostgreSQL
database), the real trainer on the tiny model, and the real ingest API (a live daphne server):
launch → succeeded with metrics and samples stored; kill -9 the worker mid-stage → failed
(worker lost) → resume → succeeded with no step stored twice; cancel → cancelled."""
from __future__ import annotations

from pathlib import Path

import pytest

from r1lab.pipelines import services
from r1lab.pipelines.models import PipelineRun, Stage, StageAttempt
from r1lab.pipelines.stage_templates import TEMPLATES
from r1lab.tracking.models import LostPoint, Point, Rewind, Sample, Series
from tests.e2e.conftest import server_env
from tests.factories import UserFactory
from tests.pipelines.factories import TINY_GRPO, BaseModelFactory, PromptSetFactory, write_prompts
from tests.pipelines.worker import pid_alive, purge_queues, start_worker, tiny_base, wait_for, worker_env
from training_backend.stage import checkpoint_dirs

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lab(live_asgi, tmp_path, settings):
    """A data dir, the tiny base model and a prompt set, as the workers will see them."""
    settings.R1LAB_DATA_DIR = tmp_path / "data"
    purge_queues()
    train, ev = write_prompts(tmp_path / "prompts", n=32, n_eval=4)
    base = BaseModelFactory(name="tiny", path=str(tiny_base()))
    prompts = PromptSetFactory(name="adds", train_path=str(train), eval_path=str(ev), train_count=32, eval_count=4)
    workers = []

    def worker(**kw):
        env = worker_env(server_env(), data_dir=settings.R1LAB_DATA_DIR, public_url=live_asgi,
                         heartbeat_timeout_s=kw.pop("heartbeat_timeout_s", 45), sweep_s=kw.pop("sweep_s", 10))
        w = start_worker(env, tmp_path, **kw)
        workers.append(w)
        return w

    yield {"base": base, "prompts": prompts, "worker": worker, "workers": workers, "tmp": tmp_path}
    for w in workers:
        w.stop()


def _launch(lab, **config) -> Stage:
    user = UserFactory(role="researcher")
    tpl = TEMPLATES["r1_zero"]
    plans = services.pipeline_plan(template=tpl, configs=[{**TINY_GRPO, **config}], base_model=lab["base"],
                                   prompt_set=lab["prompts"])
    run = services.pipeline_run_create(name="r1-zero on tiny", template_key="r1_zero", plans=plans, user=user,
                                       base_model=lab["base"], prompt_set=lab["prompts"])
    services.pipeline_run_launch(run=run, user=user)  # committed: the task goes out now
    return run.stages.get()


def _stage(stage_id: int) -> Stage:
    return Stage.objects.select_related("tracked_run").get(pk=stage_id)


def _steps(tracked_run_id: int, key: str) -> list[int]:
    series = Series.objects.get(run_id=tracked_run_id, key=key)
    return list(Point.objects.filter(series=series).order_by("step").values_list("step", flat=True))


def test_r1_zero_runs_to_succeeded_on_a_real_worker_with_metrics_and_samples(lab):
    w = lab["worker"](queues="gpu,default")
    stage = _launch(lab, max_steps=6)
    # the workers page (Celery inspect) shows the worker, its queues and the stage it runs
    from r1lab.pipelines.selectors import workers_overview

    seen = wait_for(lambda: [i for i in workers_overview()[0] if any(s.pk == stage.pk for s in i.stages)],
                    timeout_s=120, what="the worker to report the stage as active", logs=[w])
    assert seen[0].name.startswith(w.name) and seen[0].queues == ["default", "gpu"]
    done = wait_for(lambda: _stage(stage.pk).status in ("succeeded", "failed") and _stage(stage.pk),
                    timeout_s=240, what="the stage to finish", logs=[w])
    assert done.status == "succeeded", (done.status_detail, Path(done.log_path).read_text()[-3000:])
    assert (done.exit_code, done.progress_step, done.progress_total, done.progress_pct) == (0, 6, 6, 100.0)
    assert done.run.status == "succeeded" and done.tracked_run.status == "succeeded"
    assert Path(done.outputs["final_model"]).is_dir()
    assert "R1LAB_PROGRESS" in Path(done.log_path).read_text()
    # stored by the ingest API, through the per-stage token the worker minted
    assert _steps(done.tracked_run_id, "reward") == [1, 2, 3, 4, 5, 6]
    assert Sample.objects.filter(run_id=done.tracked_run_id).count() >= 6
    attempt = StageAttempt.objects.get(stage=done, number=1)
    assert attempt.outcome == "succeeded" and attempt.worker_host
    # the worker process that ran the stage never loaded torch (the trainer subprocess did)
    maps = Path(f"/proc/{attempt.worker_pid}/maps").read_text()
    assert "libtorch" not in maps and "torch/lib" not in maps
    assert attempt.trainer_pid != attempt.worker_pid and not pid_alive(attempt.trainer_pid)


def test_kill_9_of_the_worker_is_found_and_the_stage_resumes_without_duplicated_steps(lab):
    sweeper = lab["worker"](queues="default", beat=True, heartbeat_timeout_s=5, sweep_s=1)
    gpu = lab["worker"](queues="gpu", heartbeat_timeout_s=5, sweep_s=1)
    stage = _launch(lab, max_steps=40, save_steps=1, save_total_limit=2, log_samples=2)
    wait_for(lambda: _stage(stage.pk).progress_step >= 3, timeout_s=180, what="a few steps", logs=[gpu])
    trainer_pid = StageAttempt.objects.get(stage_id=stage.pk, number=1).trainer_pid
    gpu.kill9()
    # the trainer follows its worker down (PR_SET_PDEATHSIG), nothing keeps writing
    wait_for(lambda: not pid_alive(trainer_pid), timeout_s=15, what="the trainer to die with its worker")
    lost = wait_for(lambda: (s := _stage(stage.pk)).status == "failed" and s, timeout_s=60,
                    what="failed (worker lost)", logs=[sweeper])
    assert lost.status_detail == "worker lost" and lost.tracked_run.status == "crashed"
    assert StageAttempt.objects.get(stage=lost, number=1).outcome == "worker_lost"
    # What the resume will use: complete checkpoints only (a save the kill cut short is a .tmp dir).
    last_checkpoint = int(checkpoint_dirs(Path(lost.output_dir))[-1].name.split("-")[1])
    assert last_checkpoint >= 3

    lab["worker"](queues="gpu", heartbeat_timeout_s=5, sweep_s=1)
    services.stage_resume(stage=lost, user=None)
    done = wait_for(lambda: (s := _stage(stage.pk)).status in ("succeeded", "failed") and s, timeout_s=240,
                    what="the resumed stage to finish", logs=lab["workers"])
    assert done.status == "succeeded", (done.status_detail, Path(done.log_path).read_text()[-3000:])
    second = StageAttempt.objects.get(stage=done, number=2)
    assert second.resume and second.first_step == last_checkpoint + 1  # continued from the checkpoint
    assert "--resume" in Path(second.log_path).read_text().splitlines()[0]
    assert _steps(done.tracked_run_id, "reward") == list(range(1, 41))  # every step once, none twice
    # ... and each from the attempt that makes the curve: the resumed trainer rewound the run to
    # its checkpoint, so nothing the killed attempt logged after it is spliced into the curve.
    rewind = Rewind.objects.get(run_id=done.tracked_run_id)
    assert (rewind.after_step, rewind.attempt) == (last_checkpoint, 2)
    after = Point.objects.filter(series__run_id=done.tracked_run_id, step__gt=last_checkpoint)
    assert after.exists() and min(after.values_list("ts", flat=True)) >= second.started_at.timestamp() - 1
    assert all(p.attempt == 1 and p.step > last_checkpoint for p in LostPoint.objects.filter(rewind=rewind))


def test_cancel_a_running_stage_stops_the_trainer_after_a_checkpoint(lab):
    w = lab["worker"](queues="gpu,default")
    stage = _launch(lab, max_steps=200, save_steps=50)
    wait_for(lambda: _stage(stage.pk).progress_step >= 2, timeout_s=180, what="a few steps", logs=[w])
    services.stage_cancel(stage=_stage(stage.pk), user=None)
    done = wait_for(lambda: (s := _stage(stage.pk)).status in ("cancelled", "failed", "succeeded") and s,
                    timeout_s=60, what="the stage to stop", logs=[w])
    assert (done.status, done.exit_code) == ("cancelled", 75)  # the trainer checkpointed and exited 75
    assert any((Path(done.output_dir) / "checkpoints").glob("step-*"))
    assert done.run.status == "cancelled"


def test_the_demo_path_builds_the_base_in_its_first_stage_then_trains_from_it(lab):
    """As `make demo` launches it: make_base (on the worker) → GRPO from the model it wrote."""
    w = lab["worker"](queues="gpu,default")
    base = BaseModelFactory(name="built-here", path=str(lab["tmp"] / "data" / "models" / "tiny-base"))
    user = UserFactory(role="researcher")
    plans = services.pipeline_plan(template=TEMPLATES["r1_zero"], configs=[{**TINY_GRPO, "max_steps": 2}],
                                   base_model=base, prompt_set=lab["prompts"], build_base=True, base_steps=3)
    run = services.pipeline_run_create(name="demo path", template_key="r1_zero", plans=plans, user=user,
                                       base_model=base, prompt_set=lab["prompts"])
    services.pipeline_run_launch(run=run, user=user)
    run = wait_for(lambda: (r := PipelineRun.objects.get(pk=run.pk)).status in ("succeeded", "failed") and r,
                   timeout_s=300, what="both stages to finish", logs=[w])
    build, grpo = run.stages.order_by("index")
    assert (build.kind, build.status, grpo.status) == ("make_base", "succeeded", "succeeded"), (
        build.status_detail, grpo.status_detail)
    assert (Path(base.path) / "config.json").exists()
    assert grpo.resolved_inputs["model"]["path"] == base.path  # trained from what stage 0 built
