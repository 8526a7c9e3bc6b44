"""Supervised fine-tuning on chat JSONL with the loss on assistant tokens only.

One loop for R1's cold start (stage 1), the SFT on rejection-sampled + general data (stage 3) and
distillation (a student's SFT on a teacher's rejection-sampled set): they differ only in the spec's
model and data.

    for step:  batch_size rows (epochs of seeded permutations: any step is reproducible on resume)
               -> right-padded ids, labels = -100 on everything but assistant tokens   # (B, T)
               -> token-mean cross-entropy, backward, clip, step (distributed.Backend)
               -> metrics, progress line; held-out loss / pass@1 / cons@k every eval_steps; checkpoint

Rendering a conversation (`encode_chat`) follows the stage's prompt renderer
(models.prompt_renderer, config `prompt_format`), so GRPO, rejection sampling, eval and SFT agree on
the text a prompt and its completion make:
- a prompt template (the tiny model's `User: {prompt} Assistant:`, a folder's r1lab_template.txt,
  or R1-Zero's): each user turn is the template around its content, each assistant turn is
  " " + its content + EOS, turns joined by " ". Each segment is tokenised on its own and the ids
  concatenated, so the mask boundary is exact (a BPE merge across the prompt/response border cannot
  happen; the cost is that such a merge is never seen in training either, as in TRL's
  `completion_only_loss`);
- the tokenizer's chat template (`apply_chat_template` over the whole conversation, `system_prompt`
  as the system turn when the row has none): an assistant turn's labels are the tokens from the end
  of the generation prompt before it (`add_generation_prompt=True`; what the template itself puts
  there, e.g. an R1 distill's `<think>\n`, is prompt, not learned) to the end of the conversation
  rendered up to that turn (its `<|im_end|>` included). Both ends are taken as common prefixes with
  the whole rendering, so a template that renders earlier turns differently (R1 distills drop the
  reasoning of past assistant turns) never mislabels a token;
- `none`: user turns as they are, assistant turns as with a template.

Choices, and why: padding, not packing (rows of a cold-start set differ a lot in length, but they
are few; packing without a per-document attention mask would let rows attend to each other);
rows longer than max_seq_length are cut at the end (the prompt is kept) and counted as
`data/truncated_rows`; a row left with no assistant token is a dataset error.
"""

from __future__ import annotations

import math
import time

import torch

from training_backend.config import SFTConfig, StageSpec
from training_backend.data import apply_template
from training_backend.stage import Out, StageShell, TrainResult

IGNORE = -100


def encode_chat(messages: list[dict], tok, render, max_len: int | None = None) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one conversation; labels are IGNORE except on assistant tokens (and
    the EOS closing each assistant turn). `render`: the stage's models.PromptRenderer. Cut to max_len."""
    if render.kind == "chat":
        if render.system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": render.system_prompt}, *messages]
        ids, labels = _encode_with_chat_template(messages, tok)
    else:
        from training_backend.models import text_codec

        template = render.template if render.kind == "template" else None
        encode = text_codec(tok)[0]
        ids, labels = [], []

        def add(text: str, learn: bool, eos: bool = False) -> None:
            seg = encode(text) + ([tok.eos_token_id] if eos else [])
            ids.extend(seg)
            labels.extend(seg if learn else [IGNORE] * len(seg))

        for i, m in enumerate(messages):
            sep = " " if i else ""
            if m["role"] == "system":
                add(m["content"].strip(), False)
            elif m["role"] == "user":
                add(sep + apply_template(m["content"], template), False)
            else:
                add(" " + m["content"].strip(), True, eos=True)
    if max_len is not None:
        ids, labels = ids[:max_len], labels[:max_len]
    return ids, labels


def _chat_ids(tok, messages: list[dict], **kw) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, **kw)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _encode_with_chat_template(messages: list[dict], tok) -> tuple[list[int], list[int]]:
    full = _chat_ids(tok, messages)
    labels = [IGNORE] * len(full)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        lo = _common_prefix(_chat_ids(tok, messages[:i], add_generation_prompt=True), full)
        hi = _common_prefix(_chat_ids(tok, messages[: i + 1]), full)
        labels[lo:hi] = full[lo:hi]
    return full, labels


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: (input_ids, attention_mask, labels), each (B, T)."""
    T = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
        labels[i, : len(y)] = torch.tensor(y)
    return ids, mask, labels


def num_steps(n_rows: int, cfg) -> int:
    """Optimizer steps of a supervised stage: max_steps, else ceil(epochs · rows / batch_size)."""
    return cfg.max_steps or max(1, math.ceil(cfg.num_epochs * n_rows / cfg.batch_size))


def sum_token_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy over label tokens, number of label tokens); position t predicts t+1."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()  # (B, T-1, V)
    target = labels[:, 1:]  # (B, T-1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((target != IGNORE).sum())


def eval_prompt_rows(chat_rows: list[dict]) -> list[dict]:
    """Prompt rows (for pass@1 / cons@k) from single-turn held-out chat rows: gold = the row's
    `answer`, else the reference response's extracted answer."""
    from training_backend.data import chat_prompt_and_answer
    from training_backend.rewards import extract_answer

    out = []
    for r in chat_rows:
        if sum(m["role"] == "user" for m in r["messages"]) != 1:
            continue
        prompt, reference = chat_prompt_and_answer(r)
        gold = r.get("answer") if r.get("answer") is not None else extract_answer(reference)
        if gold is not None:
            out.append({"id": str(r.get("id", r["_line"])), "prompt": prompt, "answer": str(gold)})
    return out


def train(spec: StageSpec, reporter, *, resume: bool = False, template: str | None = None, progress=print,
          handle_sigterm: bool = True, metrics_path: str | None = None) -> TrainResult:
    """Run an `sft` stage. DatasetError (nothing trained) on a bad row."""
    with StageShell(spec, reporter, kind="sft", resume=resume, progress=progress, handle_sigterm=handle_sigterm,
                    metrics_path=metrics_path) as shell:
        return _train(spec, reporter, shell, template)


def _train(spec: StageSpec, reporter, shell: StageShell, template: str | None) -> TrainResult:
    from training_backend.data import DatasetError, prompts_for_step, read_chat_jsonl
    from training_backend.distributed import OptimConfig, peak_memory_metrics, setup_backend, write_checkpoint
    from training_backend.evaluate import evaluate_prompts
    from training_backend.rollout import HFGenerateEngine
    from training_backend.models import load_model_and_tokenizer, prompt_renderer, stop_token_ids, text_codec

    cfg: SFTConfig = spec.config
    rows = read_chat_jsonl(spec.train_data)  # every bad row reported before a model is loaded
    eval_rows = read_chat_jsonl(spec.eval_data)[: cfg.eval_max_rows] if spec.eval_data else []
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    ckpt = shell.resume_checkpoint
    torch.manual_seed(spec.seed)
    model, tok = load_model_and_tokenizer(ckpt or spec.model_path)
    render = prompt_renderer(tok, template, cfg.prompt_format, cfg.system_prompt, cfg.prompt_template)
    shell.extra_outputs[Out.PROMPT_FORMAT] = render.describe()
    handed_on = render.template if render.kind == "template" else None  # the next stage renders prompts the same way

    def encode_rows(rs: list[dict], path: str) -> tuple[list[tuple[list[int], list[int]]], int]:
        enc, bad, cut = [], [], 0
        for r in rs:
            full = encode_chat(r["messages"], tok, render)
            x = (full[0][: cfg.max_seq_length], full[1][: cfg.max_seq_length])
            cut += len(full[0]) > cfg.max_seq_length
            if all(v == IGNORE for v in x[1][1:]):  # the first label is never predicted
                bad.append((r["_line"], f"no assistant token within max_seq_length={cfg.max_seq_length}"))
            enc.append(x)
        if bad:
            raise DatasetError(path, bad)
        return enc, cut

    train_enc, truncated = encode_rows(rows, spec.train_data)
    eval_enc, _ = encode_rows(eval_rows, spec.eval_data) if eval_rows else ([], 0)
    eval_prompts = eval_prompt_rows(eval_rows)[: cfg.eval_max_prompts] if cfg.eval_num_samples else []

    total = num_steps(len(rows), cfg)
    backend = setup_backend(model, OptimConfig(cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, cfg.weight_decay,
                                               cfg.max_grad_norm, cfg.lr_scheduler, cfg.warmup_steps),
                            engine=cfg.engine, zero_stage=cfg.zero_stage, total_steps=total,
                            micro_batch_size=cfg.batch_size, bf16=cfg.bf16)
    if ckpt:
        backend.load_state(ckpt)
    start = shell.resume_step
    shell.begin(start, resumed=ckpt is not None)  # a crashed attempt's later steps are history now
    policy = backend.module
    device = backend.device  # batches go where DeepSpeed put the model (a GPU on a CUDA host)
    engine = HFGenerateEngine(policy, pad_token_id=tok.pad_token_id, eos_token_id=stop_token_ids(model, tok))
    encode, decode = text_codec(tok)
    reporter.log_metrics(start, {"data/rows": len(rows), "data/truncated_rows": truncated, "data/eval_rows": len(eval_rows)})

    def held_out(step: int) -> dict[str, float]:
        policy.eval()
        loss_sum, n_tok = 0.0, 0
        with torch.no_grad(), backend.gathered():
            for i in range(0, len(eval_enc), cfg.batch_size):
                ids, mask, labels = (t.to(device) for t in collate(eval_enc[i:i + cfg.batch_size], tok.pad_token_id))
                s, n = sum_token_loss(policy, ids, mask, labels)
                loss_sum, n_tok = loss_sum + float(s), n_tok + n
            m = {"eval/loss": loss_sum / max(n_tok, 1)}
            if eval_prompts:
                torch.manual_seed(spec.seed * 1_000_003 + step)
                gen, results = evaluate_prompts(engine, encode, decode, eval_prompts, render=render,
                                                k=cfg.eval_num_samples, temperature=cfg.eval_temperature,
                                                top_p=cfg.eval_top_p, max_new_tokens=cfg.eval_max_new_tokens)
                m.update(gen)
                n = len(results) if cfg.log_samples < 0 else cfg.log_samples
                reporter.log_samples(step, [{"prompt": r.row["prompt"], "prompt_id": r.row["id"], "completion": r.completions[0],
                                             "answer": r.answers[0], "gold": r.row["answer"], "correct": r.correct[0],
                                             "length": r.lengths[0], "eval": True} for r in results[:n]])
        reporter.log_metrics(step, m)
        return m

    def checkpoint(step: int) -> None:
        shell.save_checkpoint(step, lambda folder: write_checkpoint(folder, backend, tok, template=handed_on),
                              keep=cfg.save_total_limit)

    last: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    tokens_seen = 0
    step = start
    for step in range(start + 1, total + 1):
        t0 = time.perf_counter()
        idx = prompts_for_step(len(rows), cfg.batch_size, step - 1, spec.seed)
        ids, mask, labels = (t.to(device) for t in collate([train_enc[i] for i in idx], tok.pad_token_id))  # (B, T) each
        policy.train()
        loss_sum, n_tok = sum_token_loss(policy, ids, mask, labels)
        loss = loss_sum / max(n_tok, 1)  # token mean over the batch
        backend.backward(loss)
        grad_norm = backend.step()
        dt = time.perf_counter() - t0
        tokens_seen += int(mask.sum())
        last = {"loss": loss.item(), "grad_norm": grad_norm, "learning_rate": backend.learning_rate(),
                "tokens_per_s": float(mask.sum()) / dt, "num_tokens": float(tokens_seen),
                "loss_tokens": float(n_tok), "epoch": step * cfg.batch_size / len(rows), "step_time": dt,
                **peak_memory_metrics()}
        reporter.log_metrics(step, last)
        if eval_rows and cfg.eval_steps and step % cfg.eval_steps == 0:
            eval_metrics = held_out(step)
        reporter.flush()
        shell.step_done(step, total)
        # after the progress line: a SIGTERM that lands anywhere in the step still gets its checkpoint
        if shell.checkpoint_due(step, total, cfg.save_steps):
            checkpoint(step)
        if shell.stop_requested:
            return shell.finish(step, stopped=True, last=last, eval_metrics=eval_metrics)
    if eval_rows and (not cfg.eval_steps or step % cfg.eval_steps):
        eval_metrics = held_out(step)
    if not shell.saved:
        checkpoint(step)
    return shell.finish(step, final=shell.final_model(), last=last, eval_metrics=eval_metrics)
