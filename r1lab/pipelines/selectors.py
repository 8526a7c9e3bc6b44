"""Reads for pipelines: the runs list (filter, search), a run with its stages and lineage, the
pickers of the launch form, log tails, and the workers page (Celery's inspect API)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.urls import reverse

from r1lab.curation import selectors as curation_selectors
from r1lab.curation.models import DatasetVersion
from r1lab.pipelines.models import BaseModel, PipelineRun, PromptSet, Stage, StageAttempt
from r1lab.tracking import prompt_stats
from r1lab.tracking import selectors as tracking_selectors
from training_backend.stage import Info, Out, checkpoint_dirs, checkpoint_step

log = logging.getLogger(__name__)


def runs_for_list(*, user, status: str = "", q: str = "", limit: int = 200) -> QuerySet[PipelineRun]:
    """Runs newest first, with their stages; `status` filters, `q` searches name, template,
    launcher and base model. Every role may see every run (runs.view is granted to all)."""
    qs = (PipelineRun.objects.select_related("created_by", "base_model", "prompt_set")
          .prefetch_related(Prefetch("stages", queryset=Stage.objects.order_by("index"))))
    if status:
        qs = qs.filter(status=status)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(template__icontains=q) | Q(created_by__username__icontains=q)
                       | Q(base_model__name__icontains=q))
    return qs[:limit]


def run_current_stage(run: PipelineRun) -> Stage | None:
    """The stage a progress bar should show: the active one, else the last that ran."""
    stages = list(run.stages.all())
    for s in stages:
        if s.status in (Stage.Status.RUNNING, Stage.Status.QUEUED):
            return s
    ran = [s for s in stages if s.attempt]
    return ran[-1] if ran else (stages[0] if stages else None)


_LATEST_KEYS = (("reward", "reward"), ("rewards/accuracy/mean", "accuracy"), ("eval/accuracy", "accuracy"))


def runs_key_metrics(runs: list[PipelineRun]) -> dict[int, dict]:
    """Last reward and accuracy per pipeline run: from the finished stages' outputs.json
    summaries, overridden by the latest points of the newest tracked run (one query for all)."""
    newest = {}
    for run in runs:
        tracked = [s.tracked_run_id for s in run.stages.all() if s.tracked_run_id]
        if tracked:
            newest[run.pk] = tracked[-1]
    latest = tracking_selectors.runs_latest_values(run_ids=list(newest.values()), keys=[k for k, _ in _LATEST_KEYS])
    out: dict[int, dict] = {}
    for run in runs:
        m: dict = {}
        for s in run.stages.all():
            summary = (s.outputs or {}).get(Out.SUMMARY) or {}
            if "last/reward" in summary:
                m["reward"] = summary["last/reward"]
            for key in ("eval/accuracy", "last/rewards/accuracy/mean"):
                if key in summary:
                    m["accuracy"] = summary[key]
                    break
        values = latest.get(newest.get(run.pk), {})
        for key, name in _LATEST_KEYS:
            if key in values:
                m[name] = values[key]
        out[run.pk] = m
    return out


def run_detail(*, run_id: int) -> PipelineRun:
    return (PipelineRun.objects.select_related("created_by", "base_model", "prompt_set")
            .prefetch_related(Prefetch("stages", queryset=Stage.objects.order_by("index").select_related("tracked_run")
                                       .prefetch_related(Prefetch("attempts", queryset=StageAttempt.objects.order_by("number")))))
            .get(pk=run_id))


@dataclass(frozen=True)
class LineageNode:
    key: str
    label: str
    kind: str  # base_model | prompt_set | dataset_version | stage | output | exported | fork_parent | stage_output | fork
    status: str = ""
    detail: str = ""
    url: str = ""  # another pipeline run's page (a fork's parent, a fork)


@dataclass(frozen=True)
class LineageEdge:
    src: str
    dst: str
    label: str


def run_lineage(run: PipelineRun) -> tuple[list[LineageNode], list[LineageEdge]]:
    """The run's graph: which base model / prompt set / dataset version / checkpoint fed which stage."""
    nodes: dict[str, LineageNode] = {}
    edges: list[LineageEdge] = []
    stages = list(run.stages.all())
    for s in stages:
        nodes[f"stage-{s.index}"] = LineageNode(f"stage-{s.index}", s.name, "stage", s.status, s.kind)
    for s in stages:
        resolved = s.resolved_inputs or {}
        for role, ref in (s.inputs or {}).items():
            src = ref.get("from")
            label = (resolved.get(role) or {}).get("label") or ""
            if src == "base_model":
                bm = BaseModel.objects.filter(pk=ref.get("id")).first()
                key = f"bm-{ref.get('id')}"
                nodes.setdefault(key, LineageNode(key, bm.name if bm else label or "base model", "base_model",
                                                  detail=bm.path if bm else ""))
                if role == "output_to":
                    edges.append(LineageEdge(f"stage-{s.index}", key, "builds"))
                    continue
            elif src == "prompt_set":
                ps = PromptSet.objects.filter(pk=ref.get("id")).first()
                key = f"ps-{ref.get('id')}"
                nodes.setdefault(key, LineageNode(key, ps.name if ps else label or "prompt set", "prompt_set",
                                                  detail=f"{ps.train_count} train / {ps.eval_count} eval" if ps else ""))
            elif src == "dataset_version":
                key = f"dv-{ref.get('id')}"
                nodes.setdefault(key, LineageNode(key, label or dataset_version_label(ref.get("id")), "dataset_version"))
            elif src == "stage":
                key = f"stage-{ref.get('index')}"
            elif src == "stage_output":  # another run's stage (a fork keeps its parent's model and data)
                other = Stage.objects.select_related("run").filter(pk=ref.get("stage_id")).first()
                key = f"xs-{ref.get('stage_id')}"
                nodes.setdefault(key, LineageNode(key, f"{other.run.name} · {other.name}" if other else label or "stage output",
                                                  "stage_output", detail=(other.outputs or {}).get(Out.FINAL_MODEL) or "" if other else "",
                                                  url=reverse("pipelines:detail", args=[other.run_id]) if other else ""))
            elif src == "checkpoint":  # a fork: the parent stage's checkpoint at a step
                parent = Stage.objects.select_related("run").filter(pk=ref.get("stage_id")).first()
                key = f"fork-parent-{ref.get('stage_id')}"
                nodes.setdefault(key, LineageNode(key, f"{parent.run.name} · {parent.name}" if parent else label or "parent stage",
                                                  "fork_parent", detail=f"checkpoint step {ref.get('step')}",
                                                  url=reverse("pipelines:detail", args=[parent.run_id]) if parent else ""))
                edges.append(LineageEdge(key, f"stage-{s.index}", f"forked at step {ref.get('step')}: checkpoint"))
                continue
            else:
                continue
            edges.append(LineageEdge(key, f"stage-{s.index}", "model" if role == "model" else "data"))
        final = (s.outputs or {}).get(Out.FINAL_MODEL)
        if final and s.kind != "make_base":
            key = f"out-{s.index}"
            nodes[key] = LineageNode(key, Path(final).name, "output", detail=final)
            edges.append(LineageEdge(f"stage-{s.index}", key, "checkpoint"))
        for fork in stage_forks(s):
            key = f"fork-{fork.pk}"
            step = fork.inputs["checkpoint"].get("step")
            nodes[key] = LineageNode(key, fork.run.name, "fork", fork.status, detail=f"forked at step {step}",
                                     url=reverse("pipelines:detail", args=[fork.run_id]))
            edges.append(LineageEdge(f"stage-{s.index}", key, f"fork at step {step}"))
    _exported_prompt_sets(stages, nodes, edges)
    return list(nodes.values()), edges


def _exported_prompt_sets(stages: list[Stage], nodes: dict, edges: list) -> None:
    """Prompt sets exported from a stage's prompt lineage (a class of its prompts): stage → set."""
    by_run = {s.tracked_run_id: s for s in stages if s.tracked_run_id}
    if not by_run:
        return
    for ps in PromptSet.objects.filter(source_run_id__in=list(by_run)).order_by("created_at"):
        key = f"ps-{ps.pk}"
        what = prompt_stats.LABELS.get(ps.source_class, ps.source_class)
        nodes[key] = LineageNode(key, ps.name, "exported", detail=f"{ps.train_count} {what} prompts at step {ps.source_step}")
        edges.append(LineageEdge(f"stage-{by_run[ps.source_run_id].index}", key, f"exported {what} prompts"))


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: str
    on_disk: bool  # False: written, since deleted (rotation keeps save_total_limit of them)


def stage_checkpoints(stage: Stage) -> list[CheckpointInfo]:
    """The stage's checkpoints by step. The complete ones on the shared disk are the truth (a
    running stage has no outputs.json yet; rotation deletes old ones) and only they can be forked
    from; the ones written and since deleted are those its outputs list, or its config's save_steps
    imply up to the step it reached, that are no longer on disk."""
    if stage.kind == "make_base" or not stage.output_dir:
        return []
    found = {checkpoint_step(p) or 0: str(p) for p in checkpoint_dirs(stage.output_dir)}
    written: set[int] = set()
    for path in (stage.outputs or {}).get(Out.CHECKPOINTS) or []:
        m = re.fullmatch(r"step-(\d+)", Path(str(path)).name)
        if m:
            written.add(int(m.group(1)))
    every = (stage.config or {}).get("save_steps")
    if isinstance(every, int) and every > 0:
        reached = max(stage.progress_step, int((stage.outputs or {}).get(Out.STEP) or 0))
        written.update(range(every, reached + 1, every))
    out = [CheckpointInfo(step, path, True) for step, path in found.items()]
    out += [CheckpointInfo(step, str(Path(stage.output_dir) / "checkpoints" / f"step-{step:06d}"), False)
            for step in written - set(found)]
    return sorted(out, key=lambda c: c.step)


def stage_forks(stage: Stage) -> list[Stage]:
    """Stages forked from one of this stage's checkpoints (their `checkpoint` input), oldest first."""
    return list(Stage.objects.filter(inputs__checkpoint__stage_id=stage.pk).select_related("run").order_by("run__created_at"))


def fork_parent(stage: Stage) -> tuple[Stage | None, int | None]:
    """(the stage a fork's checkpoint came from, its step), or (None, None) for a stage that is no fork."""
    ref = (stage.inputs or {}).get("checkpoint") or {}
    if ref.get("from") != "checkpoint":
        return None, None
    return Stage.objects.select_related("run", "tracked_run").filter(pk=ref.get("stage_id")).first(), ref.get("step")


# Secrets a log line may carry: r1lab run and personal tokens, bearer headers, `--token X`
# arguments, and the usual `key=value` credentials. Viewers read stage logs: these never reach them.
_SECRET_PATTERNS = [
    (re.compile(r"\b(r1[rp]_)[A-Za-z0-9_\-]{6,}"), r"\1********"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9_\-.~+/=]{6,}"), r"\1********"),
    (re.compile(r"(--token[= ])\S+"), r"\1********"),
    (re.compile(r"(?i)\b((?:[A-Z0-9_]*_)?(?:TOKEN|SECRET|SECRET_KEY|PASSWORD|API_KEY))(\s*[=:]\s*)(['\"]?)[^\s'\"]{4,}"),
     r"\1\2\3********"),
    (re.compile(r"(?i)\b((?:postgres(?:ql)?|redis|rediss|amqp|mysql)://[^:/@\s]*:)[^@\s]+@"), r"\1********@"),
]


def mask_secrets(text: str) -> str:
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def stage_code_sandbox(stage: Stage) -> dict | None:
    """How isolated the stage's model code ran (outputs.json "code_sandbox", written by the
    trainer when the stage uses the code reward), or None. Strings only, for the page to escape."""
    entry = (stage.outputs or {}).get(Out.CODE_SANDBOX)
    if not isinstance(entry, dict):
        return None
    level = str(entry.get("level") or "unknown")
    missing = entry.get("missing")
    return {"level": level, "mechanism": str(entry.get("mechanism") or ""),
            "missing": [str(m) for m in missing] if isinstance(missing, list) else [],
            "unsandboxed_allowed": entry.get("unsandboxed_allowed") is True,
            "badge": "succeeded" if level == "full" else "failed"}


def log_tail(path: str, *, max_bytes: int = 6000) -> str:
    """The end of a stage's log, secrets masked (untrusted text: the template escapes it)."""
    if not path:
        return ""
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]
    return mask_secrets(text)


def base_models_for_picker() -> QuerySet[BaseModel]:
    return BaseModel.objects.order_by("name")


def format_parameters(n: int | None) -> str:
    """28096 → "28.1k", 365591552 → "365.6M", 7615616512 → "7.62B"."""
    if not isinstance(n, int):
        return "—"
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def base_model_summary(model: BaseModel) -> str:
    """One line of what the folder's check found (for the launch form's picker and messages)."""
    info = model.info or {}
    if not info:
        return "not checked yet"
    parts = [str(info.get(Info.ARCHITECTURE) or "?"), f"{format_parameters(info.get(Info.PARAMETERS))} parameters",
             str(info.get(Info.DTYPE) or "?")]
    if info.get(Info.CONTEXT_LENGTH):
        parts.append(f"context {info[Info.CONTEXT_LENGTH]}")
    if info.get(Info.VOCAB_SIZE):
        parts.append(f"vocabulary {info[Info.VOCAB_SIZE]}")
    parts.append("chat template" if info.get(Info.CHAT_TEMPLATE) else "no chat template")
    return ", ".join(parts)


def prompt_sets_for_picker() -> QuerySet[PromptSet]:
    return PromptSet.objects.order_by("name")


# --- curation's dataset versions (SFT stages train on them) --------------------------------------

def dataset_versions_for_picker() -> list[tuple[int, str]]:
    """(id, label) of the dataset versions an SFT stage can train on."""
    return [(v.pk, v.label) for v in curation_selectors.dataset_versions_for_picker()]


def dataset_version_label(version_id) -> str:
    v = DatasetVersion.objects.select_related("project").filter(pk=version_id).first()
    return v.label if v else f"dataset version {version_id}"


# --- workers (Celery inspect) ---------------------------------------------------------------------

@dataclass
class WorkerInfo:
    name: str
    queues: list[str]
    active: list[dict]
    concurrency: int | None
    pid: int | None
    stages: list[Stage]
    other_tasks: list[dict]


def workers_overview(*, timeout_s: float = 1.5) -> tuple[list[WorkerInfo], str | None]:
    """The Celery workers that answer `inspect`, their queues and what each is running.
    Returns (workers, error); inspect needs a broker with broadcast (Redis), not the filesystem."""
    from r1lab.celery import app

    if not settings.REDIS_URL:
        return [], ("the embedded filesystem broker has no broadcast, so workers cannot be inspected; "
                    "set REDIS_URL to see them here. Stages still record the host that runs them.")
    try:
        insp = app.control.inspect(timeout=timeout_s)
        queues = insp.active_queues() or {}
        active = insp.active() or {}
        stats = insp.stats() or {}
    except (OSError, ConnectionError) as exc:
        return [], f"cannot reach the broker: {exc}"
    task_ids: set[str] = {t.get("id") for tasks in active.values() for t in tasks}
    by_task = {s.task_id: s for s in Stage.objects.select_related("run").filter(task_id__in=task_ids)}
    out = []
    for name in sorted(set(queues) | set(active) | set(stats)):
        tasks = active.get(name, [])
        st = stats.get(name, {})
        out.append(WorkerInfo(
            name=name, queues=sorted(q.get("name", "?") for q in queues.get(name, [])), active=tasks,
            concurrency=(st.get("pool") or {}).get("max-concurrency"), pid=st.get("pid"),
            stages=[by_task[t["id"]] for t in tasks if t.get("id") in by_task],
            other_tasks=[t for t in tasks if t.get("id") not in by_task]))
    return out, None
