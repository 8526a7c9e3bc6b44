"""Where a trainer's time goes: per-step phase timings, system metrics sampled in the trainer
process, and model FLOPs utilisation (MFU).

Standard library only at import (stage.py, which the worker imports too, uses it); psutil and
NVML (`nvidia-ml-py`, module `pynvml`) are imported lazily and are optional: without them the
CPU and memory numbers come from /proc, and without a GPU (or its driver) there are simply no
GPU series.

- `PhaseTimer`: `with timer.phase("optimizer"): …` sums the wall time of each named phase over a
  step; `take()` → {"time/optimizer": s, …} and starts the next step. `sync` (e.g.
  torch.cuda.synchronize) is called at each phase boundary so that asynchronous GPU work is
  counted in the phase that queued it.
- `SystemSampler`: a daemon thread reading, every `interval_s`,
      system/cpu_percent            the machine's CPU utilisation, % of all cores (/proc/stat)
      system/process_cpu_percent    this process (all its threads), % of one core (os.times)
      system/memory_percent         the machine's memory in use, % (/proc/meminfo: 1 − MemAvailable/MemTotal)
      system/process_rss_gb         this process's resident memory, GB (/proc/self/statm)
      system/gpu/<i>/utilization_percent, memory_used_gb, memory_percent, power_w
                                    per GPU this process may use (CUDA_VISIBLE_DEVICES, numbered as
                                    torch numbers them), through NVML
  `take()` → the mean of each over the readings since the last take (one is read then if the step
  was shorter than the interval).
- `mfu()`: model FLOPs per second over the GPU's peak, where its type is known (PEAK_BF16_FLOPS).

    MFU = F · tokens/s ÷ P
    F   = 2·N per token for each forward-only pass (generation, reference, old policy)
          + 6·N per token for each forward+backward pass (training), N = parameters
    P   = the peak dense BF16 tensor FLOP/s of one GPU (the trainer process computes on one)

This is PaLM's MFU (appendix B) with the attention term left out, counted over the whole step
(tokens/s = the step's prompt + completion tokens over its wall time): for GRPO the forward-only
passes of generation and the reference model are part of the work, and the time they take is part
of the step.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_GB = 1e9


class PhaseTimer:
    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync
        self._totals: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.sync is not None:
            self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync is not None:
                self.sync()
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self._totals[name] = self._totals.get(name, 0.0) + seconds

    def take(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self._totals.items()}
        self._totals = {}
        return out


def cuda_sync() -> Callable[[], None] | None:
    """torch.cuda.synchronize when torch is loaded and CUDA is in use, else None (CPU)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.synchronize


# --- system metrics ---------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat's first line."""
    text = _read("/proc/stat")
    if not text:
        return None
    fields = [float(x) for x in text.split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total


def _memory() -> dict[str, float]:
    out: dict[str, float] = {}
    text = _read("/proc/meminfo")
    if text:
        info = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                info[name] = float(parts[0]) * 1024  # kB
        if info.get("MemTotal") and "MemAvailable" in info:
            out["system/memory_percent"] = 100.0 * (1 - info["MemAvailable"] / info["MemTotal"])
    statm = _read("/proc/self/statm")
    if statm:
        out["system/process_rss_gb"] = int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") / _GB
    if not out:  # not Linux: psutil when it is there
        try:
            import psutil
        except ImportError:
            return out
        out["system/memory_percent"] = psutil.virtual_memory().percent
        out["system/process_rss_gb"] = psutil.Process().memory_info().rss / _GB
    return out


def visible_gpu_indices(count: int, env: str | None) -> list[int | str]:
    """The NVML devices this process may use, in the order CUDA numbers them: all of them without
    CUDA_VISIBLE_DEVICES; else its entries (indices, or GPU-… UUIDs) up to the first invalid one,
    as CUDA reads it."""
    if env is None:
        return list(range(count))
    out: list[int | str] = []
    for item in env.split(","):
        item = item.strip()
        if item.isdigit() and int(item) < count:
            out.append(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            out.append(item)
        else:
            break
    return out


class _Nvml:
    """The GPUs through NVML, or nothing: any failure to load or initialise it (no package, no
    driver, no device) leaves `handles` empty, logged once."""

    def __init__(self):
        self.handles: list = []
        self.names: list[str] = []
        try:
            import pynvml
        except ImportError:
            return
        self.nv = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.info("no GPU metrics: NVML did not initialise (%s)", exc)
            return
        try:
            for item in visible_gpu_indices(pynvml.nvmlDeviceGetCount(), os.environ.get("CUDA_VISIBLE_DEVICES")):
                h = (pynvml.nvmlDeviceGetHandleByIndex(item) if isinstance(item, int)
                     else pynvml.nvmlDeviceGetHandleByUUID(item))
                name = pynvml.nvmlDeviceGetName(h)
                self.handles.append(h)
                self.names.append(name.decode() if isinstance(name, bytes) else str(name))
        except pynvml.NVMLError as exc:
            log.info("GPU metrics: NVML could not list the devices (%s)", exc)

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        nv = getattr(self, "nv", None)
        for i, h in enumerate(self.handles):
            pre = f"system/gpu/{i}/"
            for name, fn in (("utilization_percent", lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu)),
                             ("memory", lambda: nv.nvmlDeviceGetMemoryInfo(h)),
                             ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)):
                try:
                    value = fn()
                except nv.NVMLError:  # e.g. power on a board that does not report it
                    continue
                if name == "memory":
                    out[pre + "memory_used_gb"] = value.used / _GB
                    if value.total:
                        out[pre + "memory_percent"] = 100.0 * value.used / value.total
                else:
                    out[pre + name] = value
        return out

    def close(self) -> None:
        if self.handles:
            with contextlib.suppress(Exception):
                self.nv.nvmlShutdown()
            self.handles = []


class SystemSampler:
    def __init__(self, interval_s: float = 1.0):
        self.interval_s = interval_s
        self.nvml = _Nvml()
        self._lock = threading.Lock()
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._cpu = _cpu_times()
        self._cpu_percent: float | None = None
        self._proc = self._proc_time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def gpu_names(self) -> list[str]:
        return list(self.nvml.names)

    @staticmethod
    def _proc_time() -> tuple[float, float]:
        t = os.times()
        return t.user + t.system, time.monotonic()

    def read(self) -> dict[str, float]:
        """One reading now (CPU percentages: since the previous reading)."""
        out: dict[str, float] = {}
        cpu = _cpu_times()
        if cpu and self._cpu and cpu[1] > self._cpu[1]:
            self._cpu_percent = 100.0 * (cpu[0] - self._cpu[0]) / (cpu[1] - self._cpu[1])
            self._cpu = cpu
        elif cpu and self._cpu is None:
            self._cpu = cpu
        # /proc/stat counts in clock ticks (10 ms): two readings within one tick show no time
        # passed; the last percentage stands (None only before the first tick has passed).
        if self._cpu_percent is not None:
            out["system/cpu_percent"] = self._cpu_percent
        proc = self._proc_time()
        if proc[1] > self._proc[1]:
            out["system/process_cpu_percent"] = 100.0 * (proc[0] - self._proc[0]) / (proc[1] - self._proc[1])
        self._proc = proc
        out.update(_memory())
        out.update(self.nvml.read())
        return out

    def _add(self, reading: dict[str, float]) -> None:
        with self._lock:
            for k, v in reading.items():
                self._sums[k] = self._sums.get(k, 0.0) + v
                self._counts[k] = self._counts.get(k, 0) + 1

    def take(self) -> dict[str, float]:
        """The mean of each metric since the last take (a reading is made now if there was none)."""
        with self._lock:
            empty = not self._counts
        if empty:
            reading = self.read()
            deadline = time.monotonic() + 0.05
            while "system/cpu_percent" not in reading and self._cpu is not None and time.monotonic() < deadline:
                time.sleep(0.005)  # a step shorter than one clock tick, before any tick passed: wait for one
                reading = self.read()
            self._add(reading)
        with self._lock:
            out = {k: self._sums[k] / self._counts[k] for k in self._sums}
            self._sums, self._counts = {}, {}
        return out

    def start(self) -> SystemSampler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="r1lab-system-sampler", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._add(self.read())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.nvml.close()


# --- MFU --------------------------------------------------------------------------------------------

# Peak dense BF16 (FP16 where the GPU has no BF16) tensor-core FLOP/s, without sparsity, from
# NVIDIA's datasheets; matched against NVML's device name, first match wins.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    (r"GB200|B200", 2.25e15),
    (r"H100.*(PCIe|PCIE)", 756e12),
    (r"H100.*NVL", 835e12),
    (r"H100|H200|GH200", 989e12),
    (r"H20\b", 148e12),
    (r"A100", 312e12),
    (r"A800", 312e12),
    (r"L40S", 362e12),
    (r"L40\b", 181e12),
    (r"\bL4\b", 121e12),
    (r"A10G", 70e12),
    (r"\bA10\b", 125e12),
    (r"RTX 4090", 165e12),
    (r"V100", 125e12),  # FP16
]


def peak_flops(gpu_name: str | None) -> float | None:
    if not gpu_name:
        return None
    for pattern, flops in PEAK_BF16_FLOPS:
        if re.search(pattern, gpu_name):
            return flops
    return None


def model_flops_per_token(n_params: int, *, forward_passes: int = 0, train_passes: int = 1) -> float:
    """F of the formula above: 2·N per forward-only pass, 6·N per forward+backward pass."""
    return 2.0 * n_params * forward_passes + 6.0 * n_params * train_passes


def mfu(*, flops_per_token: float, tokens_per_s: float, gpu_name: str | None) -> float | None:
    """Model FLOPs utilisation of one GPU, or None where its type (or the rate) is not known."""
    peak = peak_flops(gpu_name)
    if peak is None or tokens_per_s <= 0:
        return None
    return flops_per_token * tokens_per_s / peak


def local_gpu_name(names: list[str]) -> str | None:
    """The GPU this trainer process computes on: torch's current device is its LOCAL_RANK."""
    try:
        i = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        i = 0
    return names[i] if 0 <= i < len(names) else None
