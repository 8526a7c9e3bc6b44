"""A sync whose server goes away keeps what it read in the client's spool (beside its state
file, in the synced folder) and sends it, once, on its next run: the state never claims what the
server may lack, and the sync's own files are never read as dumps."""
import json

from r1lab_client.__main__ import main
from tests.r1lab_client.test_client import Ingest


def test_a_sync_during_an_outage_spools_and_the_next_run_sends_it_once(tmp_path, capsys):
    dump = tmp_path / "rollouts"
    dump.mkdir()
    row = {"prompt": "p", "completion": "c", "score": 1.0, "step": 1}
    (dump / "1.jsonl").write_text(json.dumps(row) + "\n")
    server = Ingest().start()
    port = server.port
    args = ["sync-rollouts", "generic", str(dump), "--url", server.base, "--token", "personal", "--name", "n", "--no-finish"]
    assert main(args) == 0 and len(server.samples) == 1
    server.stop()  # the dashboard goes away; the trainer goes on
    (dump / "2.jsonl").write_text(json.dumps({**row, "completion": "d", "step": 2}) + "\n")
    assert main(args) == 1  # spooled, and the exit status says so
    assert "the server is away: 1 batches spooled" in capsys.readouterr().out
    assert (dump / ".r1lab-sync-rollouts-generic.json.spool" / "spool.jsonl").exists()
    back = Ingest(port).start()
    try:
        assert main(args) == 0  # the spool first, then nothing new (the spool file is not a dump)
        assert [(s["step"], s["completion"]) for s in back.samples] == [(2, "d")]
        assert "synced: samples=0 skipped=0 files=2" in capsys.readouterr().out
    finally:
        back.stop()


def test_run_from_puts_a_second_sync_into_the_first_ones_run(tmp_path, capsys):
    """verl's metrics (TensorBoard) and rollouts (dumps) in one run: the second sync reuses the
    run recorded in the first one's state file instead of creating another."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    (first / "1.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c", "step": 1}) + "\n")
    (second / "2.jsonl").write_text(json.dumps({"prompt": "q", "completion": "d", "step": 2}) + "\n")
    server = Ingest().start()
    try:
        common = ["--url", server.base, "--token", "personal", "--no-finish"]
        assert main(["sync-rollouts", "generic", str(first), *common]) == 0
        assert main(["sync-rollouts", "generic", str(second), *common,
                     "--run-from", str(first / ".r1lab-sync-rollouts-generic.json")]) == 0
        assert server.auth.count("Bearer personal") == 1  # one run created
        assert [s["completion"] for s in server.samples] == ["c", "d"]
    finally:
        server.stop()
