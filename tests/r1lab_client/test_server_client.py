"""r1lab_client against the real r1lab server (daphne on the test database): a run created with a
personal token, a server outage in the middle, every point and sample stored exactly once."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import r1lab_client
from r1lab.accounts.services import api_token_create
from r1lab.tracking.models import Point, Run, Sample
from tests.e2e.conftest import server_env
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daphne:
    def __init__(self, port, log):
        self.port, self.log = port, log
        self.proc = None

    def start(self):
        env = server_env()
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "r1lab.asgi:application"],
                                     cwd=ROOT, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2).read()
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, Path(self.log).read_text()[-2000:]
                time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def server(tmp_path):
    d = Daphne(_port(), tmp_path / "daphne.log")
    d.start()
    yield d
    if d.proc.poll() is None:
        d.stop()


def test_spool_and_replay_across_a_server_outage(server, tmp_path):
    token = api_token_create(user=UserFactory(role="researcher"))[1]
    base = f"http://127.0.0.1:{server.port}"
    run = r1lab_client.init(base, token, name="outage", project="client", config={"lr": 1e-6},
                            spool_dir=tmp_path / "spool", max_retries=1, backoff_s=0.05, timeout_s=5)
    run_id = int(run.run_url.rsplit("/", 1)[1])
    for step in range(5):
        run.log({"reward": step / 10, "kl": 0.01 * step}, step=step)
    run.log_samples([{"prompt": "1+1", "completion": "<answer>2</answer>", "rewards": {"accuracy": 1.0}, "group": 0, "index": 0}], step=4)
    assert run.flush() and run.pending() == 0

    server.stop()  # outage: batches are retried, then spooled
    for step in range(5, 10):
        run.log({"reward": step / 10, "kl": 0.01 * step}, step=step)
    run.flush()
    assert run.pending() >= 1
    assert Point.objects.filter(series__run_id=run_id).count() == 10

    server.start()  # back: the spool is replayed first, in order, then the rest
    for step in range(10, 12):
        run.log({"reward": step / 10, "kl": 0.01 * step}, step=step)
    assert run.finish("succeeded")
    assert run.pending() == 0
    steps = sorted(Point.objects.filter(series__run_id=run_id, series__key="reward").values_list("step", flat=True))
    assert steps == list(range(12))
    assert Point.objects.filter(series__run_id=run_id).count() == 24
    assert Sample.objects.filter(run_id=run_id).count() == 1
    r = Run.objects.get(pk=run_id)
    assert r.status == "succeeded" and r.external and r.config == {"lr": 1e-6}
    # replaying the same batches again (a client that could not tell) stores nothing twice
    run._spool({"metrics": [{"step": 3, "key": "reward", "value": 0.3}], "samples": []})
    assert run.replay()
    assert Point.objects.filter(series__run_id=run_id).count() == 24


def test_bad_batch_is_kept_aside_and_the_run_carries_on(server, tmp_path):
    token = api_token_create(user=UserFactory(role="researcher"))[1]
    run = r1lab_client.init(f"http://127.0.0.1:{server.port}", token, name="bad", spool_dir=tmp_path / "spool", max_retries=0)
    run_id = int(run.run_url.rsplit("/", 1)[1])
    run.log({"k" * 300: 1.0}, step=0)  # key over 200 characters: 400 for the whole batch
    run.log({"reward": 1.0}, step=1)
    assert run.finish("succeeded")
    assert "longer than 200" in run.rejected_path.read_text()
    assert list(Point.objects.filter(series__run_id=run_id).values_list("step", flat=True)) == [1]


def test_trl_callback_reports_a_trainer_to_the_dashboard(server, tmp_path):
    from collections import deque

    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from r1lab_client.trl import R1labCallback

    token = api_token_create(user=UserFactory(role="researcher"))[1]
    # GRPOConfig's fields the callback reads (TrainingArguments itself needs accelerate, not installed here)
    config = {"run_name": "trl-grpo", "learning_rate": 1e-6, "num_generations": 2, "output_dir": str(tmp_path)}
    args = SimpleNamespace(**config, to_sanitized_dict=lambda: dict(config))
    trainer = type("FakeGRPO", (), {})()  # only its `_logs`, shaped as GRPOTrainer keeps them
    trainer._logs = {"prompt": deque(["1+1?", "1+1?"]), "completion": deque(["<answer>2</answer>", "<answer>3</answer>"]),
                     "rewards": {"accuracy": deque([1.0, 0.0])}, "advantages": deque([0.7, -0.7])}
    cb = R1labCallback(base_url=f"http://127.0.0.1:{server.port}", token=token, project="trl", trainer=trainer,
                       spool_dir=tmp_path / "spool")
    state, control = TrainerState(), TrainerControl()
    cb.on_train_begin(args, state, control)
    for step in (1, 2):
        state.global_step = step
        cb.on_log(args, state, control, logs={"reward": 0.5 * step, "rewards/accuracy/mean": 0.5, "kl": float("nan"), "epoch": 0.1})
    cb.on_train_end(args, state, control)
    run = Run.objects.get(name="trl-grpo")
    assert run.status == "succeeded" and run.project == "trl" and run.config["run_name"] == "trl-grpo"
    assert sorted(run.series.values_list("key", flat=True)) == ["epoch", "reward", "rewards/accuracy/mean"]
    s = Sample.objects.filter(run=run, step=1).order_by("index")
    assert [(x.group, x.index, x.correct, x.advantage) for x in s] == [(0, 0, True, 0.7), (0, 1, False, -0.7)]
