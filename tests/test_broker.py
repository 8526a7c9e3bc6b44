"""The embedded broker under concurrency: several producer and consumer processes, large
messages, and every message is read whole and exactly once (kombu's plain filesystem
transport hands out half-written files here)."""
import multiprocessing as mp
from queue import Empty

from kombu import Connection

N_PRODUCERS, N_CONSUMERS, PER_PRODUCER = 3, 3, 150
PAYLOAD = "x" * 200_000  # big enough that a write is not one syscall's worth of page cache


def _options(folder):
    return {"data_folder_in": folder, "data_folder_out": folder, "processed_folder": folder + "/processed",
            "store_processed": False, "polling_interval": 0.001}


def _produce(folder, pid):
    with Connection("r1fs://", transport_options=_options(folder)) as conn:
        channel = conn.default_channel
        for i in range(PER_PRODUCER):
            channel._put("q", {"id": f"{pid}-{i}", "body": PAYLOAD})


def _consume(folder, out, stop):
    seen = []
    with Connection("r1fs://", transport_options=_options(folder)) as conn:
        channel = conn.default_channel
        while True:
            try:
                msg = channel._get("q")
            except Empty:
                if stop.is_set():
                    break
                continue
            assert msg["body"] == PAYLOAD
            seen.append(msg["id"])
    out.put(seen)


def test_every_message_is_delivered_whole_and_once(tmp_path):
    import r1lab.celery  # noqa: F401  registers the r1fs:// alias

    folder = str(tmp_path)
    (tmp_path / "processed").mkdir()
    ctx = mp.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    consumers = [ctx.Process(target=_consume, args=(folder, out, stop)) for _ in range(N_CONSUMERS)]
    producers = [ctx.Process(target=_produce, args=(folder, p)) for p in range(N_PRODUCERS)]
    for proc in consumers + producers:
        proc.start()
    for proc in producers:
        proc.join(120)
        assert proc.exitcode == 0
    stop.set()
    results = [out.get(timeout=120) for _ in consumers]
    for proc in consumers:
        proc.join(60)
        assert proc.exitcode == 0, "a consumer crashed (half-written message?)"
    ids = [i for seen in results for i in seen]
    assert len(ids) == len(set(ids)) == N_PRODUCERS * PER_PRODUCER
