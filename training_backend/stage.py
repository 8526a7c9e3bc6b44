"""The worker <-> trainer contract, and the stage shell every trainer runs in.

Standard library only: the worker (Django, never torch) imports this module to write SPEC.json,
start the trainer, follow its progress and read what it produced; the trainers import it for the
same names. Nothing about SPEC, outputs, progress or exit codes is written down anywhere else.

The contract, end to end:

    worker                                              trainer (python -m training_backend run)
    write_spec(attempt_dir/SPEC.json)  ── argv ──>      SPEC_KEYS; the run token in $RUN_TOKEN_ENV
    parse_progress(line) per log line  <── stdout ──    progress_line(step, total, eta_s) per step
    read_outputs(output_dir)           <── file ──      write_outputs(output_dir, ...) at the end
    the exit code (ExitCode)           <── exit ──      OK, BAD_SPEC, STOPPED (SIGTERM), CRASH

The shell (`StageShell`): what the GRPO, SFT, reward-model, rejection-sampling and eval loops
share — stop at the next step boundary on SIGTERM, find the checkpoint to resume from, rewind the
dashboard's curve to it, print progress with an ETA, save checkpoints atomically and rotate them,
copy the final model, write outputs.json atomically, and report where the time goes (per-phase
timings, system metrics: telemetry.py). The torch half of a checkpoint (weights,
tokenizer, optimizer) is written by a callback the trainer passes (distributed.write_checkpoint).
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training_backend.telemetry import PhaseTimer, SystemSampler, cuda_sync, local_gpu_name, mfu

# --- exit codes ----------------------------------------------------------------------------------


class ExitCode(enum.IntEnum):
    OK = 0  # done; outputs.json says what was produced
    CRASH = 1  # anything unexpected (a traceback in trainer.log)
    BAD_SPEC = 2  # bad spec or dataset: one `spec error:` / `data error:` line each on stderr, nothing trained
    STOPPED = 75  # SIGTERM: a checkpoint was written; `--resume` continues from it (EX_TEMPFAIL)


# --- SPEC.json -----------------------------------------------------------------------------------

SPEC_FILE = "SPEC.json"
SPEC_KEYS = ("kind", "model_path", "output_dir", "train_data", "eval_data", "seed", "config")
RUN_TOKEN_ENV = "R1LAB_RUN_TOKEN"  # the run's ingest token: in the environment, never in argv (ps shows argv)


def write_spec(path: str | os.PathLike, *, kind: str, model_path: str | None, output_dir: str | None,
               train_data: str | None, eval_data: str | None, seed: int, config: dict) -> Path:
    """SPEC.json for `python -m training_backend run` (config.load_spec reads it back)."""
    spec = {"kind": kind, "model_path": model_path, "output_dir": output_dir, "train_data": train_data,
            "eval_data": eval_data, "seed": int(seed), "config": config}
    return _write_json_atomic(Path(path), spec)


# --- the progress line -----------------------------------------------------------------------------

PROGRESS_PREFIX = "R1LAB_PROGRESS "
_PROGRESS_RE = re.compile(r"^R1LAB_PROGRESS (\{.*\})\s*$")


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    eta_s: float | None


def progress_line(step: int, total: int, eta_s: float | None) -> str:
    """`R1LAB_PROGRESS {"step": 12, "total": 100, "eta_s": 340.5}`: one per step, on stdout."""
    return PROGRESS_PREFIX + json.dumps({"step": int(step), "total": int(total),
                                         "eta_s": None if eta_s is None else round(float(eta_s), 1)})


def parse_progress(line: str) -> Progress | None:
    """The Progress of a trainer's log line, or None (any other line, or a malformed one)."""
    m = _PROGRESS_RE.match(line)
    if not m:
        return None
    try:
        d = json.loads(m.group(1))
        eta = d.get("eta_s")
        return Progress(int(d["step"]), int(d["total"]), None if eta is None else float(eta))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# --- inspect-model: what a model folder is, read the way the trainer loads it ----------------------
#
#   web process (never torch)                       python -m training_backend inspect-model PATH
#   parse_model_check(stdout)        <── stdout ──  model_check_line(info=…) or (reason=…), one line
#   the exit code                    <── exit ──    OK (loadable) or BAD_SPEC (refused, the reason)

INSPECT_COMMAND = "inspect-model"
MODEL_CHECK_PREFIX = "R1LAB_MODEL_CHECK "


class Info:
    """The keys of a loadable folder's info (training_backend.model_info; stored on BaseModel.info)."""

    ARCHITECTURE, MODEL_TYPE, PARAMETERS, DTYPE = "architecture", "model_type", "parameter_count", "dtype"
    WEIGHT_DTYPES = "weight_dtypes"  # {safetensors dtype: parameters stored in it}
    CONTEXT_LENGTH, VOCAB_SIZE = "context_length", "vocab_size"  # both from config.json
    TOKENIZER_CLASS, TOKENIZER_SIZE, SPECIAL_TOKENS = "tokenizer_class", "tokenizer_size", "special_tokens"
    CHAT_TEMPLATE = "chat_template"  # the template's source (truncated), or None
    PREVIEW_PROMPT = "preview_prompt"  # the example problem both previews wrap
    PREVIEW_RAW, PREVIEW_RAW_TOKENS = "preview_raw", "preview_raw_tokens"  # R1-Zero template, raw
    PREVIEW_CHAT, PREVIEW_CHAT_TOKENS = "preview_chat", "preview_chat_tokens"  # through the chat template
    TAG_TOKENS = "tag_tokens"  # {"<think>": tokens it encodes to, …}: 1 means a single token
    GENERATION = "generation"  # scalar fields of generation_config.json
    PROMPT_TEMPLATE = "prompt_template"  # r1lab_template.txt, the template the trainer wraps prompts in
    WARNINGS = "warnings"  # what loads but deserves a look (unexpected tensors…)
    TRANSFORMERS_VERSION = "transformers_version"  # the version that loaded it


def model_check_line(*, info: dict | None = None, reason: str | None = None) -> str:
    """`R1LAB_MODEL_CHECK {"ok": true, "info": {…}}` or `… {"ok": false, "reason": "…"}`."""
    payload = {"ok": True, "info": info} if reason is None else {"ok": False, "reason": reason}
    return MODEL_CHECK_PREFIX + json.dumps(payload)


def parse_model_check(stdout: str) -> tuple[dict | None, str | None] | None:
    """(info, None) for a loadable folder, (None, reason) for a refused one, None when the output
    has no check line (the check crashed). Libraries print their own lines around it: the last
    check line counts."""
    for line in reversed(stdout.splitlines()):
        if not line.startswith(MODEL_CHECK_PREFIX):
            continue
        try:
            d = json.loads(line[len(MODEL_CHECK_PREFIX):])
        except ValueError:
            return None
        if not isinstance(d, dict):
            return None
        if d.get("ok") is True and isinstance(d.get("info"), dict):
            return d["info"], None
        if d.get("ok") is False and isinstance(d.get("reason"), str):
            return None, d["reason"]
        return None
    return None


# --- outputs.json ----------------------------------------------------------------------------------

OUTPUTS_FILE = "outputs.json"


class Out:
    """outputs.json keys. Every kind writes the first eight; the others are kind-specific."""

    KIND, STATUS, STEP, SUMMARY = "kind", "status", "step", "summary"
    FINAL_MODEL = "final_model"  # an HF folder (weights, tokenizer, r1lab_template.txt) or null
    CHECKPOINTS, LATEST_CHECKPOINT = "checkpoints", "latest_checkpoint"
    METRICS = "metrics"  # the metrics JSONL when not reported over HTTP, else null
    # rejection_sampling: the chat JSONL, its funnel, every scored candidate, what removed each
    DATASET, FUNNEL, CANDIDATES, REMOVED, NUM_ROWS = "dataset", "funnel", "candidates", "removed", "num_rows"
    # eval: what was evaluated and the per-prompt results
    MODEL, RESULTS = "model", "results"
    CODE_SANDBOX = "code_sandbox"  # {level, mechanism, missing, unsandboxed_allowed} when model code ran
    METRICS_JSONL = "metrics_jsonl"  # added by the worker: where the attempt's metrics file is
    PROMPT_FORMAT = "prompt_format"  # how prompts were rendered: {kind: template|chat|none, template?, system_prompt?}


SUCCEEDED, STOPPED = "succeeded", "stopped"  # outputs.json "status"


def write_outputs(out_dir: str | os.PathLike, outputs: dict) -> Path:
    return _write_json_atomic(Path(out_dir) / OUTPUTS_FILE, outputs)


def read_outputs(out_dir: str | os.PathLike) -> dict | None:
    """outputs.json of a stage's output folder; None when missing or unreadable."""
    try:
        data = json.loads((Path(out_dir) / OUTPUTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear_outputs(out_dir: str | os.PathLike) -> None:
    """Before an attempt starts: an earlier attempt's outputs must not pass for this one's."""
    (Path(out_dir) / OUTPUTS_FILE).unlink(missing_ok=True)


def _write_json_atomic(path: Path, data: dict) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path


# --- checkpoints ------------------------------------------------------------------------------------

CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_NAME = re.compile(r"step-(\d+)")
# What a final model folder keeps of a checkpoint: weights, tokenizer and template, not the
# optimizer, engine or trainer state.
NOT_IN_FINAL = ("optimizer.pt", "deepspeed", "ref_model.pt", TRAINER_STATE)


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first. A save killed half-way leaves `step-N.tmp` (renamed into
    place only when complete): never a checkpoint, whatever it already holds."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.exists():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _CHECKPOINT_NAME.fullmatch(p.name)) and (p / TRAINER_STATE).exists()]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The training step of a checkpoint folder (its trainer_state.json, or its stage's outputs.json)."""
    p = Path(path)
    for f in (p / TRAINER_STATE, p.parent / OUTPUTS_FILE):
        try:
            return int(json.loads(f.read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def checkpoint_path(output_dir: str | os.PathLike, step: int) -> Path:
    """Where a stage's checkpoint of `step` lives: `<output_dir>/checkpoints/step-NNNNNN`."""
    return Path(output_dir) / CHECKPOINTS_DIR / f"step-{int(step):06d}"


def link_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A complete checkpoint folder `src` as `dst`, sharing its files by hard links (copied where
    the file system refuses a link, e.g. across devices): a fork's own snapshot of its parent's
    checkpoint. A saved checkpoint's files are never written again (a save fills a new folder and
    renames it; rotation unlinks), so sharing them is safe, costs no disk, and a rotation that
    deletes `src` leaves `dst` whole. Built as `dst.tmp` and renamed: never half there."""
    src, dst = Path(src), Path(dst)
    if not (src / TRAINER_STATE).exists():
        raise FileNotFoundError(f"{src} is not a complete checkpoint (no {TRAINER_STATE})")
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_final(out_dir: str | os.PathLike, checkpoint: str | os.PathLike) -> str:
    """`<out_dir>/final`: the checkpoint without its training state, loadable on its own."""
    final = Path(out_dir) / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(checkpoint, final, ignore=shutil.ignore_patterns(*NOT_IN_FINAL))
    return str(final)


# --- the shell ---------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a stage's `train()` returns; the CLI maps `stopped` to ExitCode.STOPPED."""

    step: int
    stopped: bool
    final_model: str | None
    checkpoints: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class StageShell:
    """One stage attempt's frame around its loop.

        with StageShell(spec, reporter, kind="sft", resume=resume, progress=progress) as shell:
            model = load(shell.resume_checkpoint or spec.model_path)
            shell.begin(shell.resume_step, resumed=shell.resume_checkpoint is not None)
            for step in range(shell.start_step + 1, total + 1):
                ...                                  # train, log metrics
                shell.step_done(step, total)         # the progress line, with an ETA
                if shell.checkpoint_due(step, total, cfg.save_steps):
                    shell.save_checkpoint(step, write, keep=cfg.save_total_limit)
                if shell.stop_requested:
                    return shell.finish(step, stopped=True)
            return shell.finish(step, final=shell.final_model())

    A SIGTERM sets `stop_requested`; the loop checkpoints and stops at the next step boundary
    (after that step's progress line, so a signal that lands while it is printed still gets the
    step's checkpoint).
    """

    def __init__(self, spec, reporter, *, kind: str, resume: bool, progress: Callable[[str], None] = print,
                 handle_sigterm: bool = True, metrics_path: str | None = None, system_metrics: bool = True):
        self.spec, self.reporter, self.kind = spec, reporter, kind
        # Where the time goes (telemetry.py): the loop times its phases with `shell.timer`; the
        # sampler reads CPU, memory and GPUs on a thread from begin() to the end of the attempt.
        self.timer = PhaseTimer()
        self.system_metrics = system_metrics
        self._sampler: SystemSampler | None = None
        self._step_metrics_taken = False
        self.out_dir = Path(spec.output_dir)
        self.progress = progress
        self.metrics_path = metrics_path
        self.extra_outputs: dict = {}  # kind-specific outputs.json keys set while the stage runs (e.g. Out.PROMPT_FORMAT)
        self.handle_sigterm = handle_sigterm
        self.stop_requested = False
        ckpts = checkpoint_dirs(self.out_dir) if resume else []
        # The checkpoint to continue from (None: start from spec.model_path) and its step.
        self.resume_checkpoint: Path | None = ckpts[-1] if ckpts else None
        self.resume_step: int = (checkpoint_step(ckpts[-1]) or 0) if ckpts else 0
        self.saved: list[str] = [str(p) for p in ckpts]
        self.start_step = self.resume_step
        self._t_begin: float | None = None
        self._old_handler = None

    def __enter__(self) -> StageShell:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.handle_sigterm:
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self.handle_sigterm and self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def _on_sigterm(self, *_) -> None:
        self.stop_requested = True

    def begin(self, start_step: int, *, resumed: bool) -> None:
        """The loop starts after `start_step`. A resumed attempt rewinds the dashboard's run to it
        (what a crashed attempt logged later is history, not the curve); a fresh one rewinds it to
        the start (-1)."""
        self.start_step = start_step
        self.reporter.rewind(start_step if resumed else -1)
        self.timer.sync = cuda_sync()  # models are loaded: CUDA is initialised if it is used
        if self.system_metrics and self._sampler is None:
            self._sampler = SystemSampler().start()
        self._t_begin = time.perf_counter()

    def step_metrics(self, *, tokens_per_s: float | None = None, flops_per_token: float | None = None) -> dict[str, float]:
        """This step's phase times (`time/<phase>`), system metrics (`system/…`) and, with the
        step's tokens/s and model FLOPs per token on a GPU of a known type, `perf/mfu`: for the
        loop to log with its own metrics. A loop that does not call it gets them logged by
        step_done."""
        out = self.timer.take()
        if self._sampler is not None:
            out.update(self._sampler.take())
            if tokens_per_s and flops_per_token:
                value = mfu(flops_per_token=flops_per_token, tokens_per_s=tokens_per_s,
                            gpu_name=local_gpu_name(self._sampler.gpu_names))
                if value is not None:
                    out["perf/mfu"] = value
        self._step_metrics_taken = True
        return out

    def step_done(self, step: int, total: int) -> None:
        if not self._step_metrics_taken:
            extra = self.step_metrics()
            if extra:
                self.reporter.log_metrics(step, extra)
                self.reporter.flush()
        self._step_metrics_taken = False
        if self._t_begin is None:
            self._t_begin = time.perf_counter()
        done = max(step - self.start_step, 1)
        eta = (time.perf_counter() - self._t_begin) / done * (total - step)
        self.progress(progress_line(step, total, eta))

    def checkpoint_due(self, step: int, total: int, save_steps: int) -> bool:
        return step % save_steps == 0 or step == total or self.stop_requested

    def save_checkpoint(self, step: int, write: Callable[[Path], None], *, keep: int = 0) -> str:
        """`write(folder)` fills a temporary folder (weights, tokenizer, optimizer…); it becomes
        checkpoints/step-N (with trainer_state.json) by one rename, then the oldest beyond `keep`
        (0: all) are deleted."""
        path = self.out_dir / CHECKPOINTS_DIR / f"step-{step:06d}"
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        (tmp / TRAINER_STATE).write_text(json.dumps({"step": step}))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        if str(path) not in self.saved:
            self.saved.append(str(path))
        while keep and len(self.saved) > keep:
            shutil.rmtree(self.saved.pop(0), ignore_errors=True)
        return str(path)

    def final_model(self) -> str:
        """`final/` from the latest checkpoint."""
        return write_final(self.out_dir, self.saved[-1])

    def finish(self, step: int, *, stopped: bool = False, final: str | None = None, last: dict | None = None,
               eval_metrics: dict | None = None, summary: dict | None = None, **extra) -> TrainResult:
        """Write outputs.json (atomically) and return the TrainResult the CLI maps to an exit code.
        `summary`: the summary as is; else step, stopped, `last/<k>` of `last` and `eval_metrics`."""
        if summary is None:
            summary = {"step": step, "stopped": stopped, **{f"last/{k}": v for k, v in (last or {}).items()},
                       **(eval_metrics or {})}
        outputs = {Out.KIND: self.kind, Out.STATUS: STOPPED if stopped else SUCCEEDED, Out.STEP: step,
                   Out.FINAL_MODEL: final, Out.CHECKPOINTS: list(self.saved),
                   Out.LATEST_CHECKPOINT: self.saved[-1] if self.saved else None,
                   Out.METRICS: self.metrics_path, Out.SUMMARY: summary, **self.extra_outputs, **extra}
        write_outputs(self.out_dir, outputs)
        return TrainResult(step, stopped, final, list(self.saved), summary)
