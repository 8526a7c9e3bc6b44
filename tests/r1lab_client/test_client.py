"""r1lab_client against a real local http.server that we stop and restart (no mocks)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import r1lab_client
from r1lab_client import Run


class Ingest:
    """A tiny stand-in for the dashboard's ingest API, idempotent per (key, step)."""

    def __init__(self, port: int = 0):
        self.metrics: dict[tuple[str, int], float] = {}
        self.order: list[tuple[str, int]] = []
        self.samples: list[dict] = []
        self.finished: list[str] = []
        self.auth: list[str] = []
        self.fail_next_5xx = 0
        self.fail_all_500 = False  # a sick server: 500 on every log
        self.rewinds: list[int] = []
        self.log_bodies: list[int] = []  # size of each /log body, in arrival order
        self.gate = threading.Event()  # cleared: /log requests wait for it (a busy server)
        self.gate.set()
        self.changed = threading.Condition()
        self.port = port
        self.server = None

    def wait_until(self, predicate, timeout: float = 10.0) -> bool:
        """Wait for what the client sent to arrive (the client does not wait for every answer)."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def start(self):
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                try:
                    self.handle_post()
                finally:
                    with ingest.changed:
                        ingest.changed.notify_all()

            def handle_post(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                ingest.auth.append(self.headers.get("Authorization", ""))
                if ingest.fail_next_5xx:
                    ingest.fail_next_5xx -= 1
                    return self.reply(503, {"error": "busy"})
                if self.path == "/api/v1/runs":
                    return self.reply(201, {"id": 42, "token": "run-token"})
                if self.path == "/api/v1/runs/42/rewind":
                    ingest.rewinds.append(body["step"])
                    for key in [k for k in ingest.metrics if k[1] > body["step"]]:
                        del ingest.metrics[key]
                    return self.reply(200, {"step": body["step"]})
                if self.path == "/api/v1/runs/42/log":
                    ingest.gate.wait(30)
                    ingest.log_bodies.append(len(raw))
                    if ingest.fail_all_500 or any(m["key"] == "poison" for m in body.get("metrics", [])):
                        return self.reply(500, {"error": "internal error"})  # a server bug on this batch
                    bad = [m for m in body.get("metrics", []) if not isinstance(m.get("value"), (int, float))]
                    if bad:
                        return self.reply(400, {"error": f"metrics[0].value must be a number"})
                    for m in body["metrics"]:
                        key = (m["key"], m["step"])
                        if key not in ingest.metrics:
                            ingest.order.append(key)
                        ingest.metrics[key] = m["value"]
                    ingest.samples += body.get("samples", [])
                    return self.reply(200, {"accepted": {"metrics": len(body["metrics"]),
                                                         "samples": len(body.get("samples", []))}})
                if self.path == "/api/v1/runs/42/finish":
                    ingest.finished.append(body["status"])
                    return self.reply(200, {"status": body["status"]})
                self.reply(404, {"error": "no such run"})

            def reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def ingest():
    s = Ingest().start()
    yield s
    s.stop()


def test_init_creates_a_run_and_logs_with_its_token(ingest, tmp_path):
    run = r1lab_client.init(ingest.base, token="personal", name="t", project="p", config={"lr": 1.0},
                            spool_dir=tmp_path)
    assert run.run_url == ingest.base + "/api/v1/runs/42"
    run.log({"reward": 0.5, "loss": float("nan")}, step=1)
    run.log_samples([{"prompt": "1+1", "completion": "2", "rewards": {"accuracy": 1.0}}], step=1)
    run.log({"reward": 0.7}, step=2)  # a new step sends step 1's batch
    assert ingest.wait_until(lambda: ("reward", 1) in ingest.metrics)
    assert ingest.metrics == {("reward", 1): 0.5}
    assert run.finish("succeeded")
    assert ingest.metrics == {("reward", 1): 0.5, ("reward", 2): 0.7}
    assert ingest.samples[0]["step"] == 1 and ingest.finished == ["succeeded"]
    assert ingest.auth[0] == "Bearer personal" and set(ingest.auth[1:]) == {"Bearer run-token"}


def test_server_down_spools_then_replays_in_order(tmp_path):
    server = Ingest().start()
    port = server.port
    run = Run(f"{server.base}/api/v1/runs/42", "t", spool_dir=tmp_path, max_retries=1, backoff_s=0.01, timeout_s=2)
    run.log({"reward": 0.1}, step=1)
    assert run.flush()
    server.stop()  # the dashboard goes away for steps 2..4
    for step in (2, 3, 4):
        run.log({"reward": step / 10}, step=step)
        run.log_samples([{"prompt": "p", "completion": f"c{step}", "rewards": {}}], step=step)
    assert not run.flush()
    assert run.pending() == 3
    restarted = Ingest(port).start()  # same address, empty memory
    try:
        restarted.fail_next_5xx = 1  # and a transient 503 on the first try: retried, not spooled again
        run.log({"reward": 0.5}, step=5)
        assert run.finish("succeeded")
        assert run.pending() == 0
        assert restarted.order == [("reward", 2), ("reward", 3), ("reward", 4), ("reward", 5)]
        assert [s["completion"] for s in restarted.samples] == ["c2", "c3", "c4"]
        assert restarted.finished == ["succeeded"]
    finally:
        restarted.stop()


def test_a_bad_batch_is_kept_in_rejected_and_the_run_goes_on(ingest, tmp_path, capsys):
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, max_retries=0)
    run._metrics.append({"step": 1, "key": "reward", "value": "high"})  # what a buggy caller could send
    assert run.flush()
    rejected = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["status"] == 400 and rejected[0]["batch"]["metrics"][0]["value"] == "high"
    assert "rejected" in capsys.readouterr().err
    run.log({"reward": 1.0}, step=2)
    assert run.finish("failed") and ingest.metrics == {("reward", 2): 1.0}
    assert run.pending() == 0


def test_a_run_that_never_reaches_the_server_keeps_everything_on_disk(tmp_path):
    server = Ingest().start()
    url = f"{server.base}/api/v1/runs/42"
    server.stop()
    run = Run(url, "t", spool_dir=tmp_path, max_retries=0)
    run.log({"reward": 1.0}, step=1)
    assert not run.finish("succeeded")
    entry = json.loads((tmp_path / "spool.jsonl").read_text())
    assert entry["op"] == "log" and entry["batch"]["metrics"][0]["key"] == "reward"


def test_one_batch_the_server_fails_on_never_blocks_the_run(ingest, tmp_path, capsys):
    """A batch answered 500 (the server failing on it) was spooled and replayed first forever,
    so every later batch of the run queued behind it. Once a later batch goes through, the
    failing one is set aside into the rejected file and the run's data keeps flowing."""
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, max_retries=1, backoff_s=0.01)
    run.log({"poison": 1.0}, step=1)
    run.log({"reward": 0.2}, step=2)  # step 1's batch: 500 twice → spooled
    assert run.pending() == 1
    run.log({"reward": 0.3}, step=3)  # replay fails again, step 2's batch goes through → set aside
    assert run.finish("succeeded")
    assert run.pending() == 0
    assert ingest.metrics == {("reward", 2): 0.2, ("reward", 3): 0.3}
    rejected = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [r["batch"]["metrics"][0]["key"] for r in rejected] == ["poison"]
    assert rejected[0]["status"] == 500 and "later batches" in rejected[0]["why"]
    assert "kept in" in capsys.readouterr().err


def test_a_sick_server_keeps_the_spool_until_max_error_tries(ingest, tmp_path):
    """500 on everything: nothing can tell a bad batch from a sick server, so batches stay spooled
    in order, and only a batch that failed `max_error_tries` times is set aside."""
    ingest.fail_all_500 = True
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, max_retries=0, max_error_tries=3)
    for step in (1, 2):
        run.log({"reward": step / 10}, step=step)
    assert not run.flush()
    assert run.pending() == 2
    assert not (tmp_path / "rejected.jsonl").exists()
    assert not run.flush() and not run.flush()  # third failure of step 1's batch (and second of step 2's)
    assert [json.loads(x)["batch"]["metrics"][0]["step"] for x in (tmp_path / "rejected.jsonl").read_text().splitlines()] == [1]
    ingest.fail_all_500 = False
    assert run.finish("succeeded")
    assert ingest.metrics == {("reward", 2): 0.2}


def test_rewind_is_delivered_in_order_with_the_batches(tmp_path):
    server = Ingest().start()
    port = server.port
    run = Run(f"{server.base}/api/v1/runs/42", "t", spool_dir=tmp_path, max_retries=0)
    for step in (1, 2, 3):
        run.log({"reward": step / 10}, step=step)
    assert run.flush()
    server.stop()
    assert not run.rewind(1)  # the server is away: the rewind waits in the spool, in order
    run.log({"reward": 0.9}, step=2)
    assert not run.flush()
    restarted = Ingest(port).start()
    restarted.metrics = dict(server.metrics)
    try:
        assert run.finish("succeeded")
        assert restarted.rewinds == [1]
        assert restarted.metrics == {("reward", 1): 0.1, ("reward", 2): 0.9}
    finally:
        restarted.stop()


def test_each_token_spools_apart(tmp_path, monkeypatch):
    """A resumed attempt gets a fresh run token: it must not replay what the crashed attempt left."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    a, b = Run("http://127.0.0.1:9/api/v1/runs/42", "token-1"), Run("http://127.0.0.1:9/api/v1/runs/42", "token-2")
    assert a.spool_dir != b.spool_dir


# --- batching (issue 14): full speed for a fast logger, no added latency for a slow one ---------


def test_a_step_goes_out_when_the_next_one_starts(ingest, tmp_path):
    """A trainer that logs a step a second: its points reach the server when the step ends (the
    next step starts), not when a batch is full. No flush, no linger timer: the step end alone."""
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, linger_s=None)
    run.log({"reward": 0.1, "kl": 0.01}, step=0)
    run.log_samples([{"prompt": "p", "completion": "c", "rewards": {"accuracy": 1.0}}], step=0)
    assert not ingest.log_bodies
    run.log({"reward": 0.2}, step=1)
    assert ingest.wait_until(lambda: len(ingest.samples) == 1)
    assert ingest.metrics == {("reward", 0): 0.1, ("kl", 0): 0.01}
    assert run.finish("succeeded") and ingest.metrics[("reward", 1)] == 0.2


def test_steps_logged_while_the_server_is_busy_go_out_together(ingest, tmp_path):
    """A fast logger (a replayed event file, a benchmark) must not pay one request per step: while
    the server has not answered, the steps that end pile into one batch. Before: 200 requests."""
    ingest.gate.clear()  # the server takes its time
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, linger_s=None)
    for step in range(200):
        run.log({"reward": step / 200, "kl": 0.001 * step}, step=step)
    ingest.gate.set()
    assert run.finish("succeeded")
    assert len(ingest.log_bodies) <= 4
    assert sorted(s for k, s in ingest.metrics if k == "reward") == list(range(200))
    assert run.sent_batches == len(ingest.log_bodies)


def test_what_waits_is_sent_without_another_call(ingest, tmp_path):
    """A burst of logging, then nothing (a long evaluation): the last step does not wait for
    the trainer's next call. Before: it waited for the next step or flush."""
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, linger_s=0.05)
    run.log({"reward": 0.5}, step=7)
    assert ingest.wait_until(lambda: ("reward", 7) in ingest.metrics)
    assert run.finish("succeeded")


def test_batches_are_cut_by_bytes(ingest, tmp_path):
    """Long rollouts are cut into bodies of at most max_bytes (a single bigger sample goes
    alone), far below the server's R1LAB_INGEST_MAX_BYTES (16 MiB): before, 1,000 samples of
    any size made one body, over the limit (413) for long completions."""
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path, max_bytes=1_000_000)
    text = "x" * 300_000
    run.log_samples([{"prompt": "p", "completion": text, "rewards": {}, "index": i} for i in range(10)], step=1)
    run.log_samples([{"prompt": "p", "completion": "y" * 1_200_000, "rewards": {}, "index": 10}], step=1)
    assert run.finish("succeeded")
    assert len(ingest.samples) == 11
    assert all(n <= 1_000_000 for n in ingest.log_bodies[:-1]) and ingest.log_bodies[-1] > 1_000_000
    assert Run("http://h/api/v1/runs/1", "t").max_bytes * 3 < 16 * 1024 * 1024


def test_a_nan_in_a_sample_is_sent_as_null(ingest, tmp_path):
    run = Run(f"{ingest.base}/api/v1/runs/42", "t", spool_dir=tmp_path)
    run.log_samples([{"prompt": "p", "completion": "c", "rewards": {"accuracy": float("nan"), "format": 1.0},
                      "advantage": float("inf")}], step=0)
    assert run.finish("succeeded")
    assert ingest.samples[0]["rewards"] == {"accuracy": None, "format": 1.0} and ingest.samples[0]["advantage"] is None
