"""GRPO step time and peak memory: our loop vs TRL 1.16's GRPOTrainer, the same work, in one run, alternated.

    .venv/bin/python benchmarks/grpo_step.py                      # tiny char model -> results/grpo_step.json
    .venv/bin/python benchmarks/grpo_step.py --model-kind qwen2   # Qwen2-style stand-in -> results/grpo_step-qwen2.json
    .venv/bin/python benchmarks/grpo_step.py --model PATH         # any HF folder with a chat template (-qwen2 file)

What each side does per step (the same work on both):
- samples 8 prompts x G=8 = 64 completions from the current policy in one batch with transformers
  `generate` (multinomial, temperature 1, no top-p/top-k), at most --new-tokens new tokens, stopping
  at EOS; prompts are the same pre-formatted strings on both sides (the R1-Zero template for the
  tiny model, the tokenizer's chat template with a system message and add_generation_prompt for
  the others), tokenised by the same tokenizer class (the folder's own: CharTokenizer for the tiny
  model, PreTrainedTokenizerFast for BPE), and the orchestrator checks that both encodings agree;
- scores them with accuracy + format (training_backend.rewards on both sides: TRL gets them as
  reward_funcs); group advantages divided by the group std;
- reference log-probs from a frozen copy of the starting model (beta = 0.04, so both load one);
- no old-policy pass (num_iterations 1, one minibatch: the ratio is 1, both skip it);
- one forward + backward of the DAPO token-mean loss (both defaults) over the 64 completions and
  one AdamW step (lr 1e-6, betas 0.9/0.999, grad-norm clip 1.0): one optimizer step per step.
Precision: fp32 on both sides. TRL gets `bf16=False`: its default `bf16=True` with `use_cpu=True`
becomes bf16 autocast on the CPU, which measures the CPU's bf16 matmuls, not the trainer (what
the earlier version of this script did: 4.3 s a TRL step instead of 0.73 s). Otherwise TRL runs at
its defaults, among them `gradient_checkpointing=True` (the training forward runs again in
backward: less memory, more time). Ours runs with engine "torch" (the CPU worker's plain AdamW
loop; DeepSpeed is for GPUs).

How it is timed: each side runs in its own process (ours in .venv, TRL in var/bench-venv), both
alive in the same run. Each blocks on its stdin before every step, so one computes at a time, and
the orchestrator alternates them step by step (ABBA: ours first on even steps, TRL first on odd)
so that the shared machine's load drift falls on both alike. The math-verify worker processes are
started and warm (`rewards.warm_up`) before the first step on both sides. torch threads are pinned
(--threads, and OMP/MKL) in both. The first --warmup steps are not counted; medians of the rest.
- step time: ours is its `step_time` metric (prompt pick -> metrics); TRL's is on_step_begin ->
  on_step_end (generation -> optimizer step). generate = the `generate` call on both; reference =
  the reference model's log-prob pass on both; reward = the reward functions; the rest (train +
  bookkeeping) = step - generate - reference - reward.
- peak memory: the process's RSS high-water mark (VmHWM) over the steps: reset through
  /proc/self/clear_refs once the models are loaded and the math workers warm, read after the last
  step. The math-verify workers are other processes (the same on both sides) and not counted. The
  RSS before the first step is reported too, so that what the steps add (peak - before) can be
  read apart from what importing each library costs.
The load average is recorded at the start and the end (the machine is shared).

TRL runs in its own virtualenv, var/bench-venv (torch CPU wheel, trl==1.16.0, and the transformers
version of .venv, so that both sides run the same `generate`), created when missing
(`--setup-only` just creates it); trl is never a dependency of r1lab.

The "new model": `build_qwen2_standin` builds a Qwen2-style folder here (transformers Qwen2Config,
~12M parameters; a `tokenizers` byte-level BPE trained on generated text; ChatML chat template;
nothing downloaded); `--model PATH` runs any HF folder instead, e.g. the output of
`python -m training_backend make-base DIR --arch qwen2`. Both sides load it with the folder's own
tokenizer class (training_backend.models.load_tokenizer); prompts are formatted once, in the data
file, and our trainer is told so (`prompt_format: none`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_VENV = ROOT / "var" / "bench-venv"
WORK = ROOT / "var" / "bench"
TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
TRL_VERSION = "1.16.0"
PROMPTS, G, BETA, LR = 8, 8, 0.04, 1e-6
SYSTEM_PROMPT = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
                 "The Assistant first thinks about the reasoning process in the mind and then provides the user with "
                 "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
                 "</answer> tags, respectively.")
MSG = "@@bench "  # protocol lines on a side's stdout start with this; anything else is the libraries' chatter


# --- the TRL virtualenv ---------------------------------------------------------------------------

def ensure_bench_venv() -> Path:
    py = BENCH_VENV / "bin" / "python"
    want = metadata.version("transformers")
    probe = f"import trl, math_verify, transformers; assert trl.__version__ == {TRL_VERSION!r}; " \
            f"assert transformers.__version__ == {want!r}"
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return py
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        torch_req = TORCH_WHEEL if Path(TORCH_WHEEL).exists() else f"torch=={metadata.version('torch').split('+')[0]}"
        subprocess.run([str(py), "-m", "pip", "install", "-q", torch_req], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"trl=={TRL_VERSION}", f"transformers=={want}",
                    "math-verify==0.9.0"], check=True)  # the shared accuracy reward needs it
    return py


# --- the models -----------------------------------------------------------------------------------

def tiny_model(workdir: Path) -> Path:
    """The tiny char-level Llama, freshly initialised (seed 0): reproducible on any machine."""
    from training_backend import tiny

    path = workdir / "fresh-tiny"
    if not (path / "config.json").exists():
        model, tok = tiny.build_model(seed=0)
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return path


CHATML = ("{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{%- endif %}")


def _standin_corpus() -> list[str]:
    """Arithmetic-world text (the R1 template, think traces, answers) and general English prose
    (this repo's Markdown and the standard library's docstrings): a sane BPE vocabulary."""
    import ast
    import random

    from training_backend import tiny

    rng = random.Random(0)
    texts = []
    for _ in range(20000):
        a, b = tiny.sample_problem(rng)
        texts.append(tiny.TEMPLATE.format(prompt=f"{a}+{b}") + tiny.completion_for(a, b, rng))
    texts += [p.read_text(errors="ignore") for p in sorted(ROOT.glob("**/*.md")) if ".venv" not in p.parts
              and "var" not in p.parts]
    stdlib = Path(os.__file__).parent
    for p in sorted(stdlib.glob("*.py"))[:200]:
        try:
            tree = ast.parse(p.read_text(errors="ignore"))
        except SyntaxError:
            continue
        texts += [d for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and (d := ast.get_docstring(n))]
    return texts


def build_qwen2_standin(path: Path) -> Path:
    """A stand-in for the coming `make-base --arch qwen2` model: Qwen2 architecture (6 layers, width
    384, GQA 6/2 heads, tied embeddings; ~12M parameters), a byte-level BPE tokenizer (8,192
    tokens) trained here with `tokenizers`, `<think>`/`</think>`/`<answer>`/`</answer>` as single
    (non-special, so they survive decoding) tokens, `<|im_end|>` as EOS and a ChatML template;
    random weights (the step's cost does not depend on what the model knows)."""
    if (path / "config.json").exists():
        return path
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(_standin_corpus(), trainers.BpeTrainer(
        vocab_size=8192 - 4, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>", "<answer>", "</answer>")])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  chat_template=CHATML, padding_side="left")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               bos_token_id=None, do_sample=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def is_char_model(model: str | Path) -> bool:
    cfg = Path(model) / "tokenizer_config.json"
    return cfg.exists() and json.loads(cfg.read_text()).get("tokenizer_class") == "CharTokenizer"


def load_tokenizer(model: str | Path):
    """The folder's own tokenizer class, the same on both sides."""
    from training_backend.models import load_tokenizer as load

    return load(model)


def prompts_file(model: Path, out: Path) -> Path:
    """256 prompt rows with the prompt already formatted, so that both trainers see identical strings."""
    from training_backend import tiny

    rows, _ = tiny.demo_splits()
    if is_char_model(model):
        fmt = [tiny.TEMPLATE.format(prompt=r["prompt"]) for r in rows[:256]]
    else:
        tok = load_tokenizer(model)
        if not tok.chat_template:
            sys.exit(f"{model}: the tokenizer has no chat template")
        fmt = [tok.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
                                        {"role": "user", "content": f"What is {r['prompt']}?"}],
                                       add_generation_prompt=True, tokenize=False) for r in rows[:256]]
    tiny.write_jsonl([{**r, "prompt": p} for r, p in zip(rows, fmt)], out)
    return out


def check_same_prompt_ids(model: Path, data: Path) -> float:
    """Our encoding (training_backend.tiny.text_codec) == TRL's (`processing_class(text=...)`);
    returns the mean prompt length in tokens."""
    from training_backend.models import text_codec

    tok = load_tokenizer(model)
    encode, _ = text_codec(tok)
    prompts = [json.loads(line)["prompt"] for line in data.read_text().splitlines()]
    trl_ids = tok(text=prompts)["input_ids"]
    for p, theirs in zip(prompts, trl_ids):
        if encode(p) != theirs:
            sys.exit(f"the two sides would tokenise {p!r} differently: {encode(p)} vs {theirs}")
    return statistics.mean(map(len, trl_ids))


# --- one side per process -------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


PHASES = ("generate", "reference", "reward")


class Channel:
    """A side's end of the protocol: `ready` once loaded (resets the RSS high-water mark), then one
    `step` message per step; it blocks on stdin for `go` before each step. It also keeps the wall
    and CPU seconds spent in the wrapped phases (`timed`) since the last `go`."""

    def __init__(self, steps: int):
        self.steps = steps
        self.out = os.fdopen(os.dup(1), "w", buffering=1)  # libraries may print to stdout: ours is a prefix away
        self.phases: dict[str, float] = {}

    def timed(self, key: str, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                self.phases[key] = self.phases.get(key, 0.0) + time.perf_counter() - w
                self.phases["cpu_" + key] = self.phases.get("cpu_" + key, 0.0) + time.process_time() - c
        return wrapper

    def send(self, kind: str, **data) -> None:
        self.out.write(MSG + json.dumps({"kind": kind, **data}) + "\n")

    def wait(self) -> None:
        if sys.stdin.readline().strip() != "go":
            sys.exit("orchestrator gone")
        self.phases.clear()
        self.t_go = (time.perf_counter(), time.process_time())

    def ready(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        self.send("ready", rss_mb=_status_kb("VmRSS") / 1024)
        self.wait()

    def step(self, n: int, **data) -> None:
        # go -> here: everything the step costs the process, its bookkeeping between steps included;
        # CPU time (all threads) is what the shared machine's load distorts least
        phases = {k: self.phases.get(k, 0.0) for p in PHASES for k in (p, "cpu_" + p)}
        self.send("step", step=n, wall_s=time.perf_counter() - self.t_go[0], cpu_s=time.process_time() - self.t_go[1],
                  **phases, **data)
        if n < self.steps:
            self.wait()

    def done(self) -> None:
        self.send("done", peak_rss_mb=_status_kb("VmHWM") / 1024)


def run_ours(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from training_backend.config import parse_spec
    from training_backend.grpo import train
    from training_backend.report import MemoryReporter
    from training_backend.rewards import warm_up

    from training_backend import grpo, rollout

    chan = Channel(args.steps)
    warm_up()
    rollout.HFGenerateEngine.generate = chan.timed("generate", rollout.HFGenerateEngine.generate)
    grpo.score = chan.timed("reward", grpo.score)
    # the loop's log-prob function (token_logprobs before the shared-prompt passes: a checkout from
    # before them can run this script too, for before/after numbers)
    name = "completion_logprobs" if hasattr(grpo, "completion_logprobs") else "token_logprobs"
    logprobs = getattr(grpo, name)
    ref_logprobs = chan.timed("reference", logprobs)

    def split_reference(model, *a, **kw):  # the frozen reference model's passes, timed apart from the policy's
        frozen = not any(p.requires_grad for p in model.parameters())
        return (ref_logprobs if frozen else logprobs)(model, *a, **kw)

    setattr(grpo, name, split_reference)

    class GatedReporter(MemoryReporter):
        def rewind(self, step: int) -> None:  # the loop calls it once, after loading, before step 1
            super().rewind(step)
            chan.ready()

    rep = GatedReporter()

    def progress(_line: str) -> None:  # after each step
        step = rep.metrics[-1][0]
        m = {k: v for s, k, v in rep.metrics if s == step}
        chan.step(step, step_time=m["step_time"], train=m["time/train"], mean_length=m["completions/mean_length"])

    with tempfile.TemporaryDirectory() as tmp:
        spec = parse_spec({"kind": "grpo", "model_path": args.model, "output_dir": tmp, "train_data": args.data,
                           "seed": 0,
                           "config": {"max_steps": args.steps, "num_generations": G, "batch_size": PROMPTS * G,
                                      "max_completion_length": args.new_tokens, "beta": BETA, "learning_rate": LR,
                                      "adam_beta2": 0.999, "engine": "torch", "save_steps": 10**6, "log_samples": 0,
                                      "torch_threads": args.threads, "reward_funcs": ["accuracy", "format"],
                                      "loss_type": "dapo", "prompt_format": "none"}})
        train(spec, rep, progress=progress, handle_sigterm=False)
    chan.done()


def run_trl(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from training_backend.rewards import REWARD_FUNCS, warm_up

    chan = Channel(args.steps)
    warm_up()
    tok = load_tokenizer(args.model)
    policy = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ds = load_dataset("json", data_files=args.data, split="train")
    t: dict[str, float] = {}
    timed = chan.timed
    policy.generate = timed("generate", policy.generate)

    def accuracy(completions, answer, **kw):
        return REWARD_FUNCS["accuracy"](completions, answer=answer)

    def fmt(completions, **kw):
        return REWARD_FUNCS["format"](completions)

    class Gate(TrainerCallback):
        def on_step_begin(self, args_, state, control, **kw):
            if state.global_step == 0:
                chan.ready()  # later steps wait in chan.step, after the previous one
            t["start"] = time.perf_counter()

        def on_step_end(self, args_, state, control, **kw):
            chan.step(state.global_step, step_time=time.perf_counter() - t["start"],
                      mean_length=trainer._metrics["train"]["completions/mean_length"][-1])

    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(output_dir=tmp, per_device_train_batch_size=PROMPTS * G, num_generations=G,
                         max_completion_length=args.new_tokens, beta=BETA, learning_rate=LR, max_steps=args.steps,
                         bf16=False, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                         dataloader_num_workers=0, seed=0, disable_tqdm=True)
        trainer = GRPOTrainer(model=policy, reward_funcs=[timed("reward", accuracy), timed("reward", fmt)], args=cfg,
                              train_dataset=ds, processing_class=tok, callbacks=[Gate()])
        logps = trainer._get_per_token_logps_and_entropies

        def split_reference(model, *a, **kw):  # the reference model's pass, timed apart from the policy's
            return (timed("reference", logps) if model is trainer.ref_model else logps)(model, *a, **kw)

        trainer._get_per_token_logps_and_entropies = split_reference
        trainer.train()
    chan.done()


# --- orchestration --------------------------------------------------------------------------------

class Side:
    def __init__(self, name: str, python: str, args, model: Path, data: Path, env: dict, log: Path):
        self.name = name
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [python, __file__, "--side", name, "--model", str(model), "--data", str(data), "--steps", str(args.steps),
             "--new-tokens", str(args.new_tokens), "--threads", str(args.threads)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.steps: list[dict] = []

    def read(self, kind: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MSG):
                msg = json.loads(line[len(MSG):])
                if msg["kind"] != kind:
                    sys.exit(f"{self.name}: expected {kind}, got {msg}")
                return msg
        self.proc.wait()
        sys.exit(f"{self.name} exited {self.proc.returncode}; see {self.log.name}")

    def go(self) -> dict:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        msg = self.read("step")
        self.steps.append(msg)
        return msg


def _rest(s: dict) -> float:
    return s["step_time"] - s["generate"] - s["reference"] - s["reward"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-kind", choices=("tiny", "qwen2"), default="tiny",
                   help="tiny: the char-level Llama (R1-Zero template); qwen2: the Qwen2-style stand-in (chat template)")
    p.add_argument("--model", help="any HF model folder with a chat template (instead of --model-kind)")
    p.add_argument("--steps", type=int, default=8, help="steps per side (the first --warmup are not counted)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--new-tokens", type=int, help="max new tokens (default: 48 tiny, 128 otherwise)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--setup-only", action="store_true")
    p.add_argument("--skip-trl", action="store_true", help="measure only our loop (no bench venv)")
    p.add_argument("--out", help="results file (default: benchmarks/results/grpo_step[-qwen2].json)")
    args = p.parse_args()
    if args.side:
        return (run_ours if args.side == "ours" else run_trl)(args)

    trl_py = None if args.skip_trl else ensure_bench_venv()
    if args.setup_only:
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if args.model:
        model, label, source = Path(args.model).resolve(), "qwen2", "--model"
    elif args.model_kind == "tiny":
        model, label, source = tiny_model(WORK), "tiny", "training_backend.tiny.build_model(seed=0), random weights"
    else:
        model, label = build_qwen2_standin(WORK / "qwen2-standin"), "qwen2"
        source = "build_qwen2_standin (random weights): a stand-in until make-base --arch qwen2 lands"
    if args.new_tokens is None:
        args.new_tokens = 48 if is_char_model(model) else 128
    data = prompts_file(model, WORK / f"prompts-{label}.jsonl")
    prompt_tokens = check_same_prompt_ids(model, data)
    from transformers import AutoConfig

    n_params = _count_params(model)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    load_start = [round(x, 2) for x in os.getloadavg()]
    sides = {"ours": Side("ours", sys.executable, args, model, data, env, WORK / f"ours-{label}.log")}
    if trl_py:
        sides["trl"] = Side("trl", str(trl_py), args, model, data, env, WORK / f"trl-{label}.log")
    ready = {name: s.read("ready") for name, s in sides.items()}
    t0 = time.perf_counter()
    for step in range(args.steps):
        order = list(sides) if step % 2 == 0 else list(sides)[::-1]
        line = []
        for name in order:
            msg = sides[name].go()
            line.append(f"{name} {msg['step_time']:.3f}s (gen {msg['generate']:.3f}, len {msg['mean_length']:.0f})")
        print(f"step {step + 1}{' (warm-up)' if step < args.warmup else ''}: " + ", ".join(line), flush=True)
    peaks = {}
    for name, s in sides.items():
        peaks[name] = s.read("done")["peak_rss_mb"]
        s.proc.wait()
    load_end = [round(x, 2) for x in os.getloadavg()]

    med: dict[str, dict[str, float]] = {}
    for name, s in sides.items():
        timed = s.steps[args.warmup:]
        keys = ("step_time", "wall_s", "cpu_s", *PHASES, *("cpu_" + p for p in PHASES), "train", "mean_length")
        med[name] = {k: statistics.median(m[k] for m in timed) for k in keys if k in timed[0]}
        med[name]["rest"] = statistics.median(_rest(m) for m in timed)
        med[name]["cpu_rest"] = statistics.median(m["cpu_s"] - sum(m["cpu_" + p] for p in PHASES) for m in timed)
        med[name]["rss_before_steps_mb"] = ready[name]["rss_mb"]
        med[name]["peak_rss_mb"] = peaks[name]
        med[name]["peak_minus_before_mb"] = peaks[name] - ready[name]["rss_mb"]
    ours, trl = med["ours"], med.get("trl")
    import torch
    import transformers

    summary = {
        "setting": {"model": label, "model_source": source, "model_path": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
                    "architecture": AutoConfig.from_pretrained(model).architectures[0], "parameters": n_params,
                    "tokenizer_class": type(load_tokenizer(model)).__name__, "prompts": PROMPTS, "G": G,
                    "max_new_tokens": args.new_tokens, "mean_prompt_tokens": prompt_tokens, "beta": BETA, "lr": LR,
                    "precision": "fp32 both (TRL bf16=False)", "threads": args.threads, "steps": args.steps,
                    "warmup_steps": args.warmup, "order": "alternated step by step, ABBA",
                    "machine": f"{os.cpu_count()} shared CPU cores, no GPU",
                    "load_average_1_5_15_at_start": load_start, "load_average_1_5_15_at_end": load_end,
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "trl": TRL_VERSION if trl else None}},
        "ours_median": ours, "trl_median": trl,
        "time_ratio_ours_over_trl": ours["step_time"] / trl["step_time"] if trl else None,
        "cpu_ratio_ours_over_trl": ours["cpu_s"] / trl["cpu_s"] if trl else None,
        "peak_rss_ratio_ours_over_trl": ours["peak_rss_mb"] / trl["peak_rss_mb"] if trl else None,
        "raw": {name: s.steps for name, s in sides.items()},
        "command": "python benchmarks/grpo_step.py " + " ".join(sys.argv[1:]),
    }
    print(f"\n{label}: {n_params / 1e6:.1f}M parameters, {PROMPTS}x{G} completions, <= {args.new_tokens} new tokens, "
          f"load {load_start} -> {load_end}")
    print(f"{'median s':14}{'step':>8}{'generate':>10}{'reference':>11}{'reward':>8}{'rest':>8}{'length':>8}"
          f"{'peak RSS MB':>13}{'(+steps)':>10}")
    for name, m in med.items():
        who = "ours" if name == "ours" else "TRL " + TRL_VERSION
        print(f"{who + ' wall':14}{m['step_time']:8.3f}{m['generate']:10.3f}{m['reference']:11.3f}{m['reward']:8.3f}"
              f"{m['rest']:8.3f}{m['mean_length']:8.1f}{m['peak_rss_mb']:13.0f}{m['peak_minus_before_mb']:10.0f}")
        print(f"{who + ' CPU':14}{m['cpu_s']:8.3f}{m['cpu_generate']:10.3f}{m['cpu_reference']:11.3f}"
              f"{m['cpu_reward']:8.3f}{m['cpu_rest']:8.3f}")
    if trl:
        print(f"\nours / TRL: step time {summary['time_ratio_ours_over_trl']:.2f}, CPU time "
              f"{summary['cpu_ratio_ours_over_trl']:.2f}, peak RSS {summary['peak_rss_ratio_ours_over_trl']:.2f}, "
              f"RSS added by the steps {ours['peak_minus_before_mb'] / trl['peak_minus_before_mb']:.2f}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "grpo_step.json" if label == "tiny" else "grpo_step-qwen2.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def _count_params(model: Path) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).parameters())


if __name__ == "__main__":
    main()
