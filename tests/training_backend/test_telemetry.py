"""Where the time goes (issue 17 part 4): per-step phase timings and system metrics sampled in the
trainer process, on a real CPU GRPO run. GPUs are simulated at the NVML boundary only: a stand-in
`pynvml` module (the API of nvidia-ml-py) in sys.modules; everything above it is the real code.
None of this existed before (no time/policy_* keys, no system/* series, no MFU): every test failed."""
import sys
import types
from types import SimpleNamespace

import pytest

from training_backend import telemetry, tiny
from training_backend.config import parse_spec
from training_backend.grpo import train
from training_backend.report import MemoryReporter
from training_backend.rewards import REWARD_FUNCS
from tests.training_backend.test_trainer import digits_reward, make_model, make_spec

GB = 1e9


def fake_pynvml(devices, *, init_error=False, power_error=()):
    """A stand-in for nvidia-ml-py's `pynvml`: `devices` is [(name, uuid, util %, used GB, total GB, watts)]."""
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nv.NVMLError = NVMLError
    nv.calls = []

    def init():
        nv.calls.append("init")
        if init_error:
            raise NVMLError("Driver Not Loaded")

    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: nv.calls.append("shutdown")
    nv.nvmlDeviceGetCount = lambda: len(devices)
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetHandleByUUID = lambda u: [d[1] for d in devices].index(u)
    nv.nvmlDeviceGetName = lambda h: devices[h][0].encode()  # older nvidia-ml-py returns bytes
    nv.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=devices[h][2], memory=0)
    nv.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=int(devices[h][3] * GB), total=int(devices[h][4] * GB),
                                                            free=0)

    def power(h):
        if h in power_error:
            raise NVMLError("Not Supported")
        return int(devices[h][5] * 1000)  # milliwatts

    nv.nvmlDeviceGetPowerUsage = power
    return nv


H100 = ("NVIDIA H100 80GB HBM3", "GPU-aaaa", 87.0, 40.0, 80.0, 650.0)
A100 = ("NVIDIA A100-SXM4-80GB", "GPU-bbbb", 50.0, 20.0, 80.0, 300.0)


def test_phase_timer_sums_phases_per_step():
    t = telemetry.PhaseTimer()
    for _ in range(3):
        with t.phase("optimizer"):
            pass
    t.add("generate", 0.5)
    out = t.take()
    assert set(out) == {"time/optimizer", "time/generate"} and out["time/generate"] == 0.5
    assert 0 <= out["time/optimizer"] < 0.5
    assert t.take() == {}  # the next step starts empty


def test_cpu_and_memory_without_a_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed: import fails
    s = telemetry.SystemSampler()
    sum(i * i for i in range(200_000))  # some CPU time for this process
    out = s.take()
    assert set(out) == {"system/cpu_percent", "system/process_cpu_percent", "system/memory_percent",
                        "system/process_rss_gb"}
    assert 0 <= out["system/cpu_percent"] <= 100 and 0 < out["system/memory_percent"] < 100
    assert 0.01 < out["system/process_rss_gb"] < 64 and out["system/process_cpu_percent"] >= 0
    s.stop()


def test_no_driver_is_skipped_cleanly(monkeypatch):
    nv = fake_pynvml([H100], init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    s = telemetry.SystemSampler()
    assert not any(k.startswith("system/gpu/") for k in s.take()) and s.gpu_names == []
    s.stop()
    assert nv.calls == ["init"]  # nothing else was asked of a library that did not start


def test_gpus_visible_to_the_process_numbered_as_cuda_numbers_them(monkeypatch):
    nv = fake_pynvml([A100, H100, A100], power_error=(1,))
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,2")  # physical 1 (by UUID) and 2
    s = telemetry.SystemSampler()
    assert s.gpu_names == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"]
    out = s.take()
    gpu = {k: v for k, v in out.items() if k.startswith("system/gpu/")}
    assert gpu == {"system/gpu/0/utilization_percent": 87.0, "system/gpu/0/memory_used_gb": 40.0,
                   "system/gpu/0/memory_percent": 50.0,  # no power_w: this board does not report it
                   "system/gpu/1/utilization_percent": 50.0, "system/gpu/1/memory_used_gb": 20.0,
                   "system/gpu/1/memory_percent": 25.0, "system/gpu/1/power_w": 300.0}
    s.stop()
    assert nv.calls[-1] == "shutdown"
    assert telemetry.visible_gpu_indices(4, "") == []
    assert telemetry.visible_gpu_indices(4, "3,1,-1,0") == [3, 1]  # CUDA stops at the first invalid entry


def test_the_sampler_thread_averages_readings_over_a_step(monkeypatch):
    devices = [list(H100)]
    nv = fake_pynvml(devices)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    s = telemetry.SystemSampler(interval_s=3600)  # the thread never fires: readings are added by hand
    s._add(s.read())
    devices[0][2] = 13.0  # utilisation changes between two readings of the same step
    nv.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=devices[h][2], memory=0)
    s._add(s.read())
    assert s.take()["system/gpu/0/utilization_percent"] == pytest.approx((87.0 + 13.0) / 2)
    s.stop()


def test_mfu_formula_and_known_gpus():
    assert telemetry.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert telemetry.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert telemetry.peak_flops("NVIDIA L40S") == 362e12 and telemetry.peak_flops("NVIDIA L4") == 121e12
    assert telemetry.peak_flops("NVIDIA A10G") == 70e12 and telemetry.peak_flops("NVIDIA A10") == 125e12
    assert telemetry.peak_flops("Some Future GPU") is None and telemetry.peak_flops(None) is None
    f = telemetry.model_flops_per_token(1_000_000_000, forward_passes=2, train_passes=1)
    assert f == 2e9 * 2 + 6e9
    assert telemetry.mfu(flops_per_token=f, tokens_per_s=10_000, gpu_name="NVIDIA H100 80GB HBM3") == pytest.approx(
        1e14 / 989e12)
    assert telemetry.mfu(flops_per_token=f, tokens_per_s=10_000, gpu_name="unknown") is None


def test_a_loop_that_does_not_ask_gets_its_system_metrics_logged_by_the_shell(tmp_path, monkeypatch):
    """SFT, the reward model, rejection sampling and eval call only step_done: the shell logs the
    step's system metrics (and any timed phase) itself, in a batch of their own."""
    from training_backend.stage import StageShell

    monkeypatch.setitem(sys.modules, "pynvml", None)
    rep = MemoryReporter()
    spec = SimpleNamespace(output_dir=str(tmp_path / "out"))
    with StageShell(spec, rep, kind="sft", resume=False, progress=lambda _: None, handle_sigterm=False) as shell:
        shell.begin(0, resumed=False)
        with shell.timer.phase("data"):
            pass
        shell.step_done(1, 2)
        shell.step_done(2, 2)
        assert shell._sampler is not None and shell._sampler._thread.is_alive()
    assert shell._sampler is None  # stopped with the attempt
    assert {k for s, k, _ in rep.metrics if s == 1} == {"time/data", "system/cpu_percent", "system/process_cpu_percent",
                                                        "system/memory_percent", "system/process_rss_gb"}
    assert "time/data" not in {k for s, k, _ in rep.metrics if s == 2} and rep.flushes == 2


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    monkeypatch.setitem(REWARD_FUNCS, "digits", digits_reward)

    def run(**config):
        spec = parse_spec(make_spec(tmp_path, make_model(tmp_path / "base"), max_steps=2, eval_steps=0, **config))
        rep = MemoryReporter()
        train(spec, rep, template=tiny.TEMPLATE, progress=lambda _: None)
        return rep

    return run


PHASES = ("time/generate", "time/reward", "time/reference", "time/policy_forward", "time/policy_backward",
          "time/optimizer")


def test_a_cpu_grpo_run_reports_its_phases_and_system_metrics(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    rep = tiny_run()
    by_step = {}
    for step, k, v in rep.metrics:
        by_step.setdefault(step, {})[k] = v
    assert sorted(by_step) == [1, 2]
    for step, m in by_step.items():
        for k in (*PHASES, "system/cpu_percent", "system/process_cpu_percent", "system/memory_percent",
                  "system/process_rss_gb"):
            assert k in m, (step, k)
        assert all(m[k] >= 0 for k in PHASES)
        # the phases are parts of the step: together they take no longer than it
        assert sum(m[k] for k in PHASES) <= m["step_time"] * 1.01
        assert m["time/policy_forward"] + m["time/policy_backward"] + m["time/optimizer"] <= m["time/train"] * 1.01
        assert not any(k.startswith("system/gpu/") or k == "perf/mfu" for k in m)  # no GPU here
        assert "time/weight_sync" not in m  # HF generate shares the policy's weights: nothing to sync
    assert rep.flushes == 2  # one batch per step: the loop logs the system metrics with its own


def test_with_gpus_at_the_nvml_boundary_a_run_reports_them_and_its_mfu(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([H100]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    rep = tiny_run(beta=0.04)
    assert rep.series("system/gpu/0/utilization_percent") == [87.0, 87.0]
    assert rep.series("system/gpu/0/power_w") == [650.0, 650.0]
    tps, mfu = rep.series("throughput/tokens_per_s"), rep.series("perf/mfu")
    n_params = sum(p.numel() for p in tiny.build_model(seed=0, num_hidden_layers=2, hidden_size=64,
                                                       intermediate_size=128)[0].parameters())
    # generation + reference forward (2·N each) + one training pass (6·N) per token, over the H100's peak
    assert mfu == pytest.approx([(2 * n_params * 2 + 6 * n_params) * t / 989e12 for t in tps])
