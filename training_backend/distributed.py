"""Training engines: DeepSpeed (ZeRO-2 by default, ZeRO-3 as an option) or the plain torch loop.

This module owns every DeepSpeed call (process group, initialize, backward, step, checkpoint save
and load, ZeRO-3 parameter gathering) and is the project's only deepspeed importer, lazily, so the
rest of training_backend never needs it. The GRPO loop talks to a `Backend`:

    backend = setup_backend(model, optimizer_cfg, engine="deepspeed", zero_stage=2, total_steps=N)
    backend.backward(loss); grad_norm = backend.step()
    backend.backward(part, last=False) ...; backend.backward(rest); backend.step()   # accumulated
    with backend.gathered(): ...generate / save...     # ZeRO-3: full parameters for a moment
    backend.save_state(dir); backend.load_state(dir)

On a machine without the `deepspeed` launcher (this CPU, a plain `python -m training_backend run`)
`init_process_group` sets up a single-process gloo group itself: MASTER_ADDR/PORT (a free port),
RANK=0, WORLD_SIZE=1. DeepSpeed's first initialize compiles a small op into TORCH_EXTENSIONS_DIR
(~50 s here, once); set it to a kept folder (e.g. var/torch_extensions) to reuse the build.
We pass our own torch AdamW to DeepSpeed so that no CPU-Adam extension is needed.
There is no GPU in this project's CI; on GPU workers the same calls run over NCCL.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping
    lr_scheduler: str = "constant"  # constant | linear | cosine (after warm-up)
    warmup_steps: int = 0


def lr_lambda(cfg: OptimConfig, total_steps: int):
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.lr_scheduler == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group() -> None:
    """A gloo group for a process not started by the `deepspeed`/torchrun launcher (world size 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if "RANK" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(free_port())
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo" if not torch.cuda.is_available() else "nccl",
                               auto_mpi_discovery=False)


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig, total_steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps))
    return opt, sched


def peak_memory_metrics() -> dict[str, float]:
    """`perf/max_memory_allocated_gb` (GiB, verl's name): the CUDA allocator's peak since the
    process started, when there is a CUDA device; nothing on a CPU."""
    if not torch.cuda.is_available():
        return {}
    return {"perf/max_memory_allocated_gb": torch.cuda.max_memory_allocated() / 2**30}


def deepspeed_config(*, micro_batch_size: int, max_grad_norm: float, zero_stage: int, bf16: bool) -> dict:
    """The DeepSpeed config the backend initializes with. fp32 unless bf16 (no `bf16` key at all)."""
    ds_config = {
        # The loop calls backward/step once per minibatch itself; DeepSpeed's batch bookkeeping
        # only has to agree with it.
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": {"stage": zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if bf16:  # bf16 weights/activations/gradients; ZeRO keeps fp32 master weights and Adam state
        ds_config["bf16"] = {"enabled": True}
    return ds_config


def apply_hyperparameters(optimizer, scheduler, cfg: OptimConfig) -> None:
    """After a checkpoint's optimizer and scheduler state is loaded: the config's learning rate,
    betas and weight decay again. Loading restores the saved ones with the moments (param_groups,
    the scheduler's base_lrs), so a fork launched with an edited learning rate would silently train
    with its parent's. The moments and the step count stay; the schedule (a function of the step,
    never saved) is this config's. A plain resume, same config, gets the same values back."""
    scheduler.base_lrs = [cfg.learning_rate for _ in optimizer.param_groups]
    for group, lmbda in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = cfg.learning_rate
        group["lr"] = cfg.learning_rate * lmbda(scheduler.last_epoch)
        group["betas"] = (cfg.adam_beta1, cfg.adam_beta2)
        group["weight_decay"] = cfg.weight_decay
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


class Backend:
    """What the trainer needs from an engine; `module` is the plain HF model."""

    module: torch.nn.Module

    @property
    def device(self) -> torch.device:
        """Where the module's parameters are: batches are moved here (a GPU under DeepSpeed on a
        CUDA host, the CPU otherwise)."""
        return next(self.module.parameters()).device

    def backward(self, loss: torch.Tensor, *, last: bool = True) -> None:
        """Add `loss`'s gradient; `last=False` when more parts of the same update follow before step()."""
    def step(self) -> float: ...  # optimizer step (clip, update, zero grads); returns the grad norm
    def learning_rate(self) -> float: ...
    def save_state(self, path: Path) -> None: ...
    def load_state(self, path: Path) -> None: ...

    def gathered(self):
        """Context in which `module` holds its full parameters (a no-op except under ZeRO-3)."""
        return contextlib.nullcontext()

    def state_dict_for_save(self) -> dict[str, torch.Tensor]:
        with self.gathered():
            return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def named_full_parameters(self):
        """(name, full parameter) one at a time, for pushing weights to a rollout engine (vLLM).
        Use each tensor before asking for the next: under ZeRO-3 it is gathered only meanwhile."""
        for name, p in self.module.named_parameters():
            yield name, p.detach()


class TorchBackend(Backend):
    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, total_steps: int):
        self.module = model.to("cuda") if torch.cuda.is_available() else model  # what DeepSpeed does too
        self.cfg = cfg
        self.optimizer, self.scheduler = make_optimizer(model, cfg, total_steps)

    def backward(self, loss: torch.Tensor, *, last: bool = True) -> None:
        loss.backward()  # .grad accumulates until step() zeroes it

    def step(self) -> float:
        params = [p for p in self.module.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def save_state(self, path: Path) -> None:
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   Path(path) / "optimizer.pt")

    def load_state(self, path: Path) -> None:
        state = torch.load(Path(path) / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        apply_hyperparameters(self.optimizer, self.scheduler, self.cfg)


class DeepSpeedBackend(Backend):
    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, total_steps: int, *, zero_stage: int = 2,
                 micro_batch_size: int = 1, bf16: bool = False):
        import deepspeed

        init_process_group()
        self.cfg = cfg
        self.zero_stage = zero_stage
        opt, sched = make_optimizer(model, cfg, total_steps)
        ds_config = deepspeed_config(micro_batch_size=micro_batch_size, max_grad_norm=cfg.max_grad_norm,
                                     zero_stage=zero_stage, bf16=bf16)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=ds_config)
        self.module = self.engine.module

    def backward(self, loss: torch.Tensor, *, last: bool = True) -> None:
        # DeepSpeed's own accumulation: ZeRO reduces the gradients at the boundary (the last part)
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss)

    def step(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def learning_rate(self) -> float:
        return self.engine.get_lr()[0]

    def gathered(self):
        if self.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)

    def named_full_parameters(self):
        if self.zero_stage != 3:
            yield from super().named_full_parameters()
            return
        import deepspeed

        # One parameter gathered at a time: peak extra memory is the largest parameter, where
        # gathered() would materialise the whole model on every rank.
        for name, p in self.module.named_parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                yield name, p.detach()

    def save_state(self, path: Path) -> None:
        self.engine.save_checkpoint(str(Path(path) / "deepspeed"), tag="state", save_latest=False)

    def load_state(self, path: Path) -> None:
        self.engine.load_checkpoint(str(Path(path) / "deepspeed"), tag="state", load_optimizer_states=True,
                                    load_lr_scheduler_states=True)
        apply_hyperparameters(self.optimizer, self.scheduler, self.cfg)


def setup_backend(model: torch.nn.Module, cfg: OptimConfig, *, engine: str = "deepspeed", zero_stage: int = 2,
                  total_steps: int = 1, micro_batch_size: int = 1, bf16: bool = False) -> Backend:
    """Wrap `model` for training. `total_steps` counts optimizer steps (for the LR schedule).

    bf16 (DeepSpeed only) needs a CUDA device: a CPU without bf16 instructions runs bf16 matmuls
    several times slower than fp32 (the GRPO-step benchmark's lesson), so it is refused here (a
    ConfigError: exit 2, nothing trained) rather than silently slow."""
    from training_backend.config import ConfigError

    if bf16 and engine != "deepspeed":
        raise ConfigError({"bf16": "needs engine=deepspeed (the torch loop trains in fp32)"})
    if bf16 and not torch.cuda.is_available():
        raise ConfigError({"bf16": "needs a CUDA device; this machine has none (train in fp32: bf16=false)"})
    if engine == "torch":
        return TorchBackend(model, cfg, total_steps)
    if engine == "deepspeed":
        return DeepSpeedBackend(model, cfg, total_steps, zero_stage=zero_stage, micro_batch_size=micro_batch_size,
                                bf16=bf16)
    raise ValueError(f"unknown engine {engine!r}")


def write_checkpoint(folder: Path, backend: Backend, tokenizer, *, ref_model: torch.nn.Module | None = None,
                     template: str | None = None) -> None:
    """The torch half of a checkpoint (stage.StageShell.save_checkpoint makes it atomic): the HF
    model and tokenizer (loadable on their own), the engine's optimizer/scheduler state, the
    reference model when it is being synced, and the prompt template (so that the next stage
    reading this folder wraps prompts the same way)."""
    folder = Path(folder)
    with backend.gathered():  # ZeRO-3: full parameters while saving
        backend.module.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    backend.save_state(folder)
    if ref_model is not None:
        torch.save(ref_model.state_dict(), folder / "ref_model.pt")
    if template is not None:
        (folder / "r1lab_template.txt").write_text(template)
