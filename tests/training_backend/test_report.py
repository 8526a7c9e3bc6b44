"""Reporters: the JSONL file format, the in-memory one, and HTTP through r1lab_client."""

import json

from tests.r1lab_client.test_client import Ingest
from training_backend.report import HttpReporter, JsonlReporter, MemoryReporter


def test_jsonl_reporter_writes_one_object_per_metric_and_sample(tmp_path):
    path = tmp_path / "m.jsonl"
    rep = JsonlReporter(path)
    rep.log_metrics(1, {"reward": 0.5, "kl": float("nan")})
    rep.log_samples(1, [{"prompt": "1+1", "completion": "<answer> 2 </answer>", "rewards": {"accuracy": 1.0}}])
    rep.flush()
    rep.finish("succeeded")
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert rows[0] == {"step": 1, "key": "reward", "value": 0.5}
    assert rows[1] == {"step": 1, "key": "kl", "value": None}
    assert rows[2]["sample"]["rewards"] == {"accuracy": 1.0}
    assert rows[3]["finish"] == "succeeded"


def test_memory_reporter_series():
    rep = MemoryReporter()
    for s in range(3):
        rep.log_metrics(s, {"reward": s / 2})
    rep.finish("failed")
    assert rep.series("reward") == [0.0, 0.5, 1.0] and rep.status == "failed"


def test_http_reporter_delivers_and_finishes(tmp_path):
    server = Ingest().start()
    try:
        rep = HttpReporter(f"{server.base}/api/v1/runs/42", "tok", spool_dir=tmp_path)
        rep.log_metrics(1, {"reward": 0.25, "entropy": float("inf")})
        rep.log_samples(1, [{"prompt": "p", "completion": "c", "rewards": {"format": 0.0}, "advantage": -1.0, "group": 0}])
        rep.flush()
        assert server.metrics == {("reward", 1): 0.25}
        assert server.samples[0]["advantage"] == -1.0 and server.samples[0]["step"] == 1
        rep.finish("succeeded")
        assert server.finished == ["succeeded"]
    finally:
        server.stop()
