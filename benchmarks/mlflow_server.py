"""MLflow's own tracking server vs r1lab's MLflow endpoint (`/api/2.0/mlflow/`), on the same
PostgreSQL, driven by the same `mlflow` client, alternated in one run.

Setup, once: the full MLflow server lives in a venv of its own, never the shared .venv:

    python3 -m venv var/bench-mlflow-venv
    var/bench-mlflow-venv/bin/pip install "mlflow>=3,<4" "psycopg[binary]>=3.2"

Run:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<your db> REDIS_URL=redis://127.0.0.1:6379/<n> \
        .venv/bin/python benchmarks/mlflow_server.py

Servers, one process each, one request at a time (a trainer logs sequentially):
- r1lab: daphne, one process, its database DATABASE_URL, live pushes through REDIS_URL's channel
  layer, as in production. Twice: with its defaults (a psycopg connection pool, which the web
  server turns on) and with persistent per-thread connections instead (R1LAB_DB_CONN_MAX_AGE=60,
  no pool: under ASGI each request runs on a thread of its own, so they are rarely reused).
- MLflow: `mlflow server --workers 1` (uvicorn, one process; Flask in a thread pool) with
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (no job-runner processes) on `<db>_mlflowserver`, a
  database of its own on the same PostgreSQL, created fresh and dropped at the end.

Client: the `mlflow` package of the shared .venv (mlflow-skinny), the same calls on every server.
- ingest: per round a new run and CALLS × `MlflowClient.log_batch` of 1,000 metrics (20 keys ×
  50 steps), built before the clock; points/s, and the client's own CPU per call. Then the same
  bodies, encoded as the client encodes them, POSTed without the client (`requests`): what the
  server takes. Rounds alternate the servers.
- history: a run per database holding one 100,000-point metric (logged through the client,
  untimed), then REPS alternated reads: `MlflowClient.get_metric_history` end to end, the same
  GET without the client (`requests`: server + transfer), and the client's parse of the answer
  alone (json + protobuf ParseDict + Metric.from_proto, what RestStore does), which bounds any
  end-to-end ratio. Medians.
Goals (issue 14): ingest ≥ 5× MLflow's server; get_metric_history of 100k points ≥ 10× faster.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _tracking_common import RESULTS, ROOT, Server, free_port, machine, median, setup_django

MLFLOW_VENV = Path(os.environ.get("BENCH_MLFLOW_VENV", ROOT / "var" / "bench-mlflow-venv"))
if not (MLFLOW_VENV / "bin" / "mlflow").exists():
    print(f"needs the MLflow server in {MLFLOW_VENV} (see this script's docstring for the two commands); skipping")
    sys.exit(0)

setup_django()

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.protos.service_pb2 import GetMetricHistory, LogBatch  # noqa: E402
from mlflow.utils.proto_json_utils import message_to_json, parse_dict  # noqa: E402

from r1lab.accounts.services import api_token_create, roles_ensure  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
CALLS = int(os.environ.get("BENCH_CALLS", 30))
HISTORY_POINTS = int(os.environ.get("BENCH_HISTORY_POINTS", 100_000))
REPS = int(os.environ.get("BENCH_REPS", 7))
KEYS = [f"bench/metric_{i:02d}" for i in range(20)]
STEPS_PER_CALL = 50


class MlflowServer:
    def __init__(self, db_url: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(ROOT / "var" / f"bench-mlflow-server-{self.port}.log", "wb")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            [str(MLFLOW_VENV / "bin" / "mlflow"), "server", "--backend-store-uri", db_url, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", "--default-artifact-root", str(ROOT / "var" / "bench-mlflow-artifacts")],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180  # the first start creates its tables
        while True:
            try:
                urllib.request.urlopen(self.base + "/health", timeout=2).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("mlflow server did not start, see " + self.log.name)
                time.sleep(0.5)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the CLI and the uvicorn process it started
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def admin_url(db_url: str) -> str:
    return db_url.rsplit("/", 1)[0] + "/postgres"


def _ingest_run(uri: str, label: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench-ingest") or client.get_experiment(client.create_experiment("bench-ingest"))
    return client, client.create_run(exp.experiment_id, run_name=f"ingest-{label}").info.run_id


def _batches(now_ms: int) -> list[list[Metric]]:
    return [[Metric(k, (b * STEPS_PER_CALL + s) / 1000.0, now_ms + b, b * STEPS_PER_CALL + s)
             for s in range(STEPS_PER_CALL) for k in KEYS] for b in range(CALLS)]


def ingest_round(uri: str, label: str, now_ms: int) -> tuple[float, float]:
    """CALLS × MlflowClient.log_batch into a new run: (points/s, the client's own CPU ms per call)."""
    client, run_id = _ingest_run(uri, label)
    batches = _batches(now_ms)
    started, cpu = time.perf_counter(), time.process_time()
    for metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    client.set_terminated(run_id)
    return CALLS * len(batches[0]) / elapsed, cpu / CALLS * 1000


def ingest_round_raw(uri: str, label: str, now_ms: int, session: requests.Session) -> float:
    """The same requests without the client: bodies encoded as the client encodes them, before the
    clock; what the server (and the transfer) take."""
    client, run_id = _ingest_run(uri, label)
    bodies = [message_to_json(LogBatch(run_id=run_id, metrics=[m.to_proto() for m in batch])) for batch in _batches(now_ms)]
    headers = {"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"], "Content-Type": "application/json"}
    started = time.perf_counter()
    for body in bodies:
        r = session.post(uri + "/api/2.0/mlflow/runs/log-batch", data=body, headers=headers)
        assert r.status_code == 200, r.text[:300]
    elapsed = time.perf_counter() - started
    client.set_terminated(run_id)
    return CALLS * 1000 / elapsed


def history_run(uri: str, now_ms: int) -> str:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench-history") or client.get_experiment(client.create_experiment("bench-history"))
    run_id = client.create_run(exp.experiment_id, run_name="history").info.run_id
    for lo in range(0, HISTORY_POINTS, 1000):
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (s + 1), now_ms + s, s) for s in range(lo, lo + 1000)])
    client.set_terminated(run_id)
    return run_id


def parse_like_the_client(body: str) -> int:
    response = GetMetricHistory.Response()
    parse_dict(js_dict=json.loads(body), message=response)
    return len([Metric.from_proto(m) for m in response.metrics])


def history_rep(uri: str, run_id: str, session: requests.Session) -> dict:
    client = MlflowClient(tracking_uri=uri)
    started = time.perf_counter()
    n = len(client.get_metric_history(run_id, "loss"))
    e2e = time.perf_counter() - started
    assert n == HISTORY_POINTS, (uri, n)
    started = time.perf_counter()
    r = session.get(uri + "/api/2.0/mlflow/metrics/get-history", params={"run_uuid": run_id, "run_id": run_id, "metric_key": "loss"},
                    headers={"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]})
    body = r.text
    raw = time.perf_counter() - started
    assert r.status_code == 200
    started = time.perf_counter()
    assert parse_like_the_client(body) == HISTORY_POINTS
    parse = time.perf_counter() - started
    return {"client_s": e2e, "raw_http_s": raw, "client_parse_s": parse, "bytes": len(r.content)}


def main() -> None:
    db_url = os.environ["DATABASE_URL"]
    ml_db = db_url.rsplit("/", 1)[1] + "_mlflowserver"
    with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{ml_db}"')
        conn.execute(f'CREATE DATABASE "{ml_db}"')
    roles_ensure()  # a researcher and their personal token: what MLFLOW_TRACKING_TOKEN holds
    user = get_user_model().objects.create_user(username=f"bench-mlflow-{int(time.time())}")
    user.groups.add(Group.objects.get(name="researcher"))
    os.environ["MLFLOW_TRACKING_TOKEN"] = api_token_create(user=user)[1]
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "600"
    servers: dict = {}
    try:
        servers["r1lab"] = Server()
        servers["r1lab_conn_max_age"] = Server({"R1LAB_DB_CONN_MAX_AGE": "60"})
        servers["mlflow"] = MlflowServer(f"postgresql+psycopg://{db_url.split('://', 1)[1].rsplit('/', 1)[0]}/{ml_db}")
        now_ms = int(time.time() * 1000)
        for name, s in servers.items():  # warm-up: imports, connections, the experiment
            ingest_round(s.base, f"warmup-{name}", now_ms)
        ingest = {name: [] for name in servers}
        client_cpu = {name: [] for name in servers}
        raw = {name: [] for name in servers}
        session = requests.Session()
        for r in range(ROUNDS):
            for name, s in servers.items():
                rate, cpu = ingest_round(s.base, f"{name}-{r}", now_ms)
                ingest[name].append(rate)
                client_cpu[name].append(cpu)
                raw[name].append(ingest_round_raw(s.base, f"{name}-raw-{r}", now_ms, session))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} points/s (without the client {raw[k][-1]:,.0f})"
                                                 for k, v in ingest.items()), flush=True)
        r1lab_history = history_run(servers["r1lab"].base, now_ms)  # one database: both r1lab servers read it
        ml_history = history_run(servers["mlflow"].base, now_ms)
        history = {name: [] for name in servers}
        for r in range(REPS):
            for name, s in servers.items():
                history[name].append(history_rep(s.base, ml_history if name == "mlflow" else r1lab_history, session))
            print(f"history rep {r + 1}: " + ", ".join(
                f"{k} {v[-1]['client_s']:.2f} s (server+transfer {v[-1]['raw_http_s']:.2f} s)" for k, v in history.items()), flush=True)
    finally:
        for s in servers.values():
            s.stop()
        with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{ml_db}"')

    med_ingest = {k: median(v) for k, v in ingest.items()}
    med_raw = {k: median(v) for k, v in raw.items()}
    med_cpu = {k: median(v) for k, v in client_cpu.items()}
    med_hist = {k: {m: median([rep[m] for rep in v]) for m in ("client_s", "raw_http_s", "client_parse_s")}
                for k, v in history.items()}
    ratios = {
        "ingest_default": med_ingest["r1lab"] / med_ingest["mlflow"],
        "ingest_conn_max_age": med_ingest["r1lab_conn_max_age"] / med_ingest["mlflow"],
        "ingest_server_side_default": med_raw["r1lab"] / med_raw["mlflow"],
        "ingest_server_side_conn_max_age": med_raw["r1lab_conn_max_age"] / med_raw["mlflow"],
        "history_client_default": med_hist["mlflow"]["client_s"] / med_hist["r1lab"]["client_s"],
        "history_client_conn_max_age": med_hist["mlflow"]["client_s"] / med_hist["r1lab_conn_max_age"]["client_s"],
        "history_server_default": med_hist["mlflow"]["raw_http_s"] / med_hist["r1lab"]["raw_http_s"],
        "history_server_conn_max_age": med_hist["mlflow"]["raw_http_s"] / med_hist["r1lab_conn_max_age"]["raw_http_s"],
        # the best any server could reach through this client: MLflow's time over the client's own parse
        "history_client_bound": med_hist["mlflow"]["client_s"] / med_hist["r1lab"]["client_parse_s"],
    }
    print(f"\n| server | log_batch points/s (median of {ROUNDS}) | without the client | client CPU ms/call | "
          f"get_metric_history {HISTORY_POINTS:,}, client (s) | same GET without the client (s) | client's parse alone (s) |")
    print("|---|---|---|---|---|---|---|")
    for k in servers:
        h = med_hist[k]
        print(f"| {k} | {med_ingest[k]:,.0f} | {med_raw[k]:,.0f} | {med_cpu[k]:.1f} | {h['client_s']:.2f} | "
              f"{h['raw_http_s']:.3f} | {h['client_parse_s']:.2f} |")
    print("\n" + "\n".join(f"{k}: {v:.1f}×" for k, v in ratios.items()))
    goal = {"ingest_ratio": 5.0, "history_ratio": 10.0}
    met = {"ingest_through_the_client": max(ratios["ingest_default"], ratios["ingest_conn_max_age"]) >= goal["ingest_ratio"],
           "ingest_server_side": max(ratios["ingest_server_side_default"], ratios["ingest_server_side_conn_max_age"]) >= goal["ingest_ratio"],
           "history_through_the_client": max(ratios["history_client_default"], ratios["history_client_conn_max_age"]) >= goal["history_ratio"],
           "history_server_side": max(ratios["history_server_default"], ratios["history_server_conn_max_age"]) >= goal["history_ratio"]}
    print(f"goals: {met}")
    import mlflow

    versions = {"client": f"mlflow-skinny {mlflow.__version__}",
                "server": subprocess.run([str(MLFLOW_VENV / "bin" / "mlflow"), "--version"], capture_output=True,
                                         text=True).stdout.strip()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mlflow_server.json").write_text(json.dumps({
        "benchmark": "mlflow_server",
        "command": "DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python benchmarks/mlflow_server.py",
        "servers": {"r1lab": "daphne, 1 process, its defaults (a psycopg connection pool, R1LAB_DB_POOL=1)",
                    "r1lab_conn_max_age": "daphne, 1 process, R1LAB_DB_CONN_MAX_AGE=60 (persistent per-thread connections, no pool)",
                    "mlflow": "mlflow server --workers 1 (uvicorn), MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, "
                              "its own database on the same PostgreSQL"},
        "versions": versions, "client": "MlflowClient, one process, sequential calls",
        "load": {"ingest": f"{ROUNDS} rounds × {CALLS} log_batch calls × 1,000 metrics (20 keys × 50 steps)",
                 "history": f"one metric of {HISTORY_POINTS:,} points, {REPS} alternated reads"},
        "ingest_points_per_s": ingest, "median_ingest_points_per_s": med_ingest,
        "ingest_without_client_points_per_s": raw, "median_ingest_without_client_points_per_s": med_raw,
        "client_cpu_ms_per_call": client_cpu,
        "history_s": history, "median_history_s": med_hist, "ratios": ratios, "goal": goal, "goal_met": met,
        "machine": machine(), "channel_layer": "redis" if os.environ.get("REDIS_URL") else "in-memory",
    }, indent=2))


if __name__ == "__main__":
    main()
