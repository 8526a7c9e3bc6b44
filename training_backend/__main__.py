"""python -m training_backend {run,make-base,demo,sandbox-check,inspect-model}

    run SPEC.json [--report-url URL] [--metrics-out FILE.jsonl] [--resume] [--engine torch|deepspeed]
        Train one stage. With --report-url, the run token is read from $R1LAB_RUN_TOKEN (a worker
        sets it; `--token T` also works but shows the token to `ps`). Without --report-url, metrics
        and samples go to --metrics-out
        (default <output_dir>/metrics.jsonl). Prints `R1LAB_PROGRESS {"step","total","eta_s"}`
        every step; writes <output_dir>/outputs.json at the end.
    make-base OUT_DIR [--steps N] [--arch tiny|qwen2|llama]
        Pretrain a base on the synthetic arithmetic corpus: the tiny char-level Llama (training_backend.tiny,
        default), or a byte-level BPE + ChatML Qwen2 / Llama folder (training_backend.realbase).
    demo --steps N --metrics-out FILE [--arch tiny|qwen2|llama] [--base DIR] [--output-dir DIR] [--engine torch|deepspeed]
        Miniature R1-Zero: make the base if missing, then GRPO with accuracy + format rewards, prompts
        in the raw `User: {prompt} Assistant:` template both bases were pretrained on.
    sandbox-check
        Run a probe program in this host's code sandbox and print its level (full, partial, none) and
        one line per guarantee (uid, filesystem, /proc, network, pids, limits); exit 0 only when full.
    inspect-model PATH
        Check that a model folder loads the way the trainer loads it and print one
        `R1LAB_MODEL_CHECK {...}` line: its architecture, parameters, dtype, context length,
        vocabulary, chat template and prompt previews, or the reason it is refused (exit 2).

Exit codes: 0 done; 2 bad spec or bad dataset (one line per field / bad row on stderr, nothing trained);
75 stopped by SIGTERM after writing a checkpoint (resume with --resume); 1 crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from training_backend.stage import (INSPECT_COMMAND, RUN_TOKEN_ENV, ExitCode, Out, model_check_line, progress_line,
                                    read_outputs)

EXIT_OK, EXIT_CRASH, EXIT_BAD_SPEC, EXIT_STOPPED = ExitCode.OK, ExitCode.CRASH, ExitCode.BAD_SPEC, ExitCode.STOPPED

DEMO_CONFIG = dict(
    num_generations=8, batch_size=64, learning_rate=1e-4, beta=0.0, lr_scheduler="constant",
    max_completion_length=96, max_prompt_length=32, temperature=1.0, loss_type="dapo",
    reward_funcs=["accuracy", "format"], reward_weights=[1.0, 0.25], adam_beta2=0.99, max_grad_norm=1.0,
    save_steps=50, save_total_limit=1, log_samples=16, eval_steps=0, eval_max_prompts=64,
)


def _progress(line: str) -> None:
    print(line, flush=True)


def _reporter(args, output_dir: Path):
    from training_backend.report import HttpReporter, JsonlReporter

    if args.report_url:
        token = args.token or os.environ.get(RUN_TOKEN_ENV, "")
        if not token:
            raise SystemExit(f"--report-url needs the run token in ${RUN_TOKEN_ENV} (or --token)")
        return HttpReporter(args.report_url, token, spool_dir=output_dir / "report_spool"), None
    path = Path(args.metrics_out) if args.metrics_out else output_dir / "metrics.jsonl"
    return JsonlReporter(path), str(path)


# Stage kind -> the module whose `train(spec, reporter, *, resume, template, progress, metrics_path)` runs it.
STAGE_MODULES = {"grpo": "training_backend.grpo", "sft": "training_backend.sft",
                 "rejection_sampling": "training_backend.rejection", "reward_model": "training_backend.reward_model",
                 "eval": "training_backend.evaluate"}


def _print_spec_errors(exc) -> None:
    for field, msg in exc.errors.items():
        print(f"spec error: {field}: {msg}", file=sys.stderr)


def _train(spec, args, template: str | None = None) -> int:
    import importlib

    from training_backend.config import ConfigError
    from training_backend.data import DatasetError
    from training_backend.rewards.sandbox import set_unsandboxed_allowed

    # Model code (the code reward, rows with `tests`) runs only in a full sandbox unless the stage opts in.
    set_unsandboxed_allowed(getattr(spec.config, "allow_unsandboxed_code", False))
    train = importlib.import_module(STAGE_MODULES[spec.kind]).train
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reporter, metrics_path = _reporter(args, out)
    status = "failed"
    try:
        result = train(spec, reporter, resume=args.resume, template=template, progress=_progress,
                       metrics_path=metrics_path)
        status = "cancelled" if result.stopped else "succeeded"
        # Hand the prompt template the stage rendered with (the folder's, or R1-Zero's when the stage
        # chose prompt_format r1_zero) on to the next stage; a chat-formatted stage hands on nothing.
        rendered = (read_outputs(out) or {}).get(Out.PROMPT_FORMAT) or {}
        hand_on = rendered.get("template") if rendered.get("kind") == "template" else None
        if hand_on is not None and result.final_model:
            meta = Path(result.final_model) / "r1lab_template.txt"
            if not meta.exists():
                meta.write_text(hand_on)
        return EXIT_STOPPED if result.stopped else EXIT_OK
    except DatasetError as exc:  # raised before anything is trained: every bad row, then exit 2
        for line in exc.lines():
            print(f"data error: {line}", file=sys.stderr)
        return EXIT_BAD_SPEC
    except ConfigError as exc:  # the code sandbox is not full and the config did not opt in (SandboxRefused)
        _print_spec_errors(exc)
        return EXIT_BAD_SPEC
    finally:
        reporter.finish(status)


def cmd_run(args) -> int:
    from training_backend.config import ConfigError, load_spec

    try:
        spec = load_spec(args.spec)
        if args.engine and hasattr(spec.config, "engine"):  # sampling-only kinds (eval, rejection) have no engine
            spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, engine=args.engine))
    except ConfigError as exc:
        _print_spec_errors(exc)
        return EXIT_BAD_SPEC
    template = None
    meta = Path(spec.model_path) / "r1lab_template.txt"  # a model folder may name its prompt template
    if meta.exists():
        template = meta.read_text().strip("\n")
    return _train(spec, args, template)


def cmd_make_base(args) -> int:
    import torch

    from training_backend import tiny

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    def progress(step: int, total: int, elapsed: float) -> None:
        # The same progress line as the trainers, so the worker shows a moving bar and an ETA.
        if step % 10 == 0 or step == total:
            eta = elapsed / step * (total - step)
            print(progress_line(step, total, eta), flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    arch = getattr(args, "arch", "tiny")  # cmd_demo's Namespace names none
    if arch == "tiny":
        out = tiny.pretrain_base(args.out_dir, steps=900 if args.steps is None else args.steps, seed=args.seed,
                                 holdout=tiny.demo_holdout(), log=log, progress=progress)
        (Path(out) / "r1lab_template.txt").write_text(tiny.TEMPLATE)
    else:  # a real folder names no template: the trainer prompts it through its chat template
        from training_backend import realbase

        steps = {} if args.steps is None else {"steps": args.steps}
        out = realbase.pretrain_real_base(args.out_dir, arch=arch, seed=args.seed, holdout=tiny.demo_holdout(),
                                          log=log, progress=progress, **steps)
    print(f"base model written to {out} in {time.perf_counter() - t0:.0f}s", flush=True)
    return EXIT_OK


def cmd_demo(args) -> int:
    import torch

    from training_backend import tiny
    from training_backend.config import parse_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    arch = getattr(args, "arch", "tiny")
    base = Path(args.base or f"var/{arch}-base")
    t0 = time.perf_counter()
    if not (base / "config.json").exists():
        print(f"no base model at {base}: pretraining one", flush=True)
        cmd_make_base(argparse.Namespace(out_dir=str(base), steps=args.base_steps, seed=args.seed, threads=args.threads,
                                         arch=arch))
    out = Path(args.output_dir)
    train_rows, eval_rows = tiny.demo_splits()
    tiny.write_jsonl(train_rows, out / "train.jsonl")
    tiny.write_jsonl(eval_rows, out / "eval.jsonl")
    spec_d = {"kind": "grpo", "model_path": str(base), "output_dir": str(out), "train_data": str(out / "train.jsonl"),
              "eval_data": str(out / "eval.jsonl"), "seed": args.seed,
              "config": {**DEMO_CONFIG, "max_steps": args.steps, "engine": args.engine,
                         **json.loads(args.config or "{}")}}
    (out / "SPEC.json").write_text(json.dumps(spec_d, indent=2))
    spec = parse_spec(spec_d)
    args.report_url, args.token = None, None
    args.resume = False
    rc = _train(spec, args, template=tiny.TEMPLATE)  # the raw format both bases were pretrained on
    print(f"demo done in {time.perf_counter() - t0:.0f}s; metrics in {args.metrics_out}", flush=True)
    return rc


def cmd_sandbox_check(args) -> int:
    from training_backend.rewards.sandbox import FULL, sandbox_isolation, sandbox_mode

    iso = sandbox_isolation()
    print(f"code sandbox: {iso.level} (mechanism: {iso.mechanism}; R1LAB_SANDBOX={sandbox_mode()})")
    for g in iso.guarantees:
        print(f"  {g.name + ':':12} {'ok' if g.ok else 'MISSING':8} {g.detail}")
    for note in iso.notes:
        print(f"  note: {note}")
    if iso.level != FULL:
        print("code rewards are refused here unless a stage sets allow_unsandboxed_code (docs/security.md)")
    return EXIT_OK if iso.level == FULL else EXIT_CRASH


def cmd_inspect_model(args) -> int:
    from training_backend.model_info import FolderRefused, inspect_folder, quiet_transformers

    quiet_transformers()
    try:
        info = inspect_folder(args.path)
    except FolderRefused as exc:
        print(model_check_line(reason=str(exc)), flush=True)
        return EXIT_BAD_SPEC
    print(model_check_line(info=info), flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training_backend", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="train one stage from SPEC.json")
    r.add_argument("spec")
    r.add_argument("--report-url", help="the run's ingest URL, e.g. http://host:8000/api/v1/runs/42")
    r.add_argument("--token", help=f"the run's bearer token (visible in `ps`: prefer ${RUN_TOKEN_ENV})")
    r.add_argument("--metrics-out", help="JSONL file for metrics and samples (without --report-url)")
    r.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    r.add_argument("--engine", choices=("deepspeed", "torch"), help="override the spec's training engine")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("make-base", help="pretrain a local base model (tiny, or a real Qwen2 / Llama)")
    b.add_argument("out_dir")
    b.add_argument("--steps", type=int, help="pretraining steps (default: 900 tiny, realbase's default otherwise)")
    b.add_argument("--arch", choices=("tiny", "qwen2", "llama"), default="tiny",
                   help="tiny: the char-level Llama; qwen2 / llama: byte-level BPE + ChatML (training_backend.realbase)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a small shared CPU; 0 = torch's default)")
    b.set_defaults(fn=cmd_make_base)

    d = sub.add_parser("demo", help="miniature R1-Zero on the tiny model (or a real-architecture base: --arch)")
    d.add_argument("--steps", type=int, default=100)
    d.add_argument("--metrics-out", default="var/demo/metrics.jsonl")
    d.add_argument("--arch", choices=("tiny", "qwen2", "llama"), default="tiny", help="the base make-base builds when missing")
    d.add_argument("--base", help="the base folder (default var/<arch>-base)")
    d.add_argument("--base-steps", type=int, help="its pretraining steps (make-base's default for the arch)")
    d.add_argument("--output-dir", default="var/demo")
    d.add_argument("--engine", choices=("deepspeed", "torch"), default="torch")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--config", help="JSON object of GRPOConfig overrides")
    d.set_defaults(fn=cmd_demo)

    c = sub.add_parser("sandbox-check", help="print the code sandbox's isolation level; exit 0 only when full")
    c.set_defaults(fn=cmd_sandbox_check)

    i = sub.add_parser(INSPECT_COMMAND, help="check a model folder and print what it is (or why it is refused)")
    i.add_argument("path")
    i.set_defaults(fn=cmd_inspect_model)

    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
