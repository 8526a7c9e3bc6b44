"""`python -m r1lab_client sync-rollouts {verl,trl,generic}` against the real server, on hand-written
dumps in each trainer's format (verl's STEP.jsonl from `_dump_generations`, TRL's
completions_STEP.parquet, a generic JSONL/Parquet with --map). What is asserted is what the
rollout browser and the aha detector read: tracking Sample rows (step, group, index, rewards,
reward, correct). A restart sends only what is new."""
import json

import pytest

from r1lab.tracking.models import Run, Sample
from r1lab_client.__main__ import main

pytestmark = pytest.mark.django_db(transaction=True)


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _rows(name):
    run = Run.objects.get(name=name)
    return [(s.step, s.group, s.index, s.prompt, s.completion, s.rewards, s.reward, s.correct, s.advantage)
            for s in Sample.objects.filter(run=run).order_by("step", "group", "index")]


def _synced(capsys) -> str:
    return [x for x in capsys.readouterr().out.splitlines() if x.startswith("synced:")][-1]


def _verl_step(step, order):
    """verl's dump of one step: 2 prompts × 3 responses, in the order balance_batch left them."""
    rows = []
    for prompt, i in order:
        correct = i == 0
        rows.append({"input": f"user: {prompt}\nassistant:", "output": f"<think>…</think><answer>{'4' if correct else '5'}</answer>",
                     "gts": "4", "score": 1.0 if correct else 0.0, "step": step, "acc": correct, "pred": "4" if correct else "5"})
    return rows


def test_verl_generation_dumps(r1lab_url, personal_token, tmp_path, capsys):
    dump = tmp_path / "rollout_data"
    shuffled = [("2+2?", 0), ("3+1?", 0), ("2+2?", 1), ("3+1?", 1), ("3+1?", 2), ("2+2?", 2)]
    _write_jsonl(dump / "1.jsonl", _verl_step(1, shuffled))
    _write_jsonl(dump / "2.jsonl", _verl_step(2, sorted(shuffled)))
    args = ["sync-rollouts", "verl", str(dump), "--url", r1lab_url, "--token", personal_token, "--name", "verl-run", "--no-finish"]
    assert main(args) == 0
    assert _synced(capsys).startswith("synced: samples=12 skipped=0")
    rows = _rows("verl-run")
    # step 1: the prompt first seen is group 0 although its responses are not adjacent
    assert [(s, g, i, p.split(": ")[1][:4]) for s, g, i, p, *_ in rows[:6]] == [
        (1, 0, 0, "2+2?"), (1, 0, 1, "2+2?"), (1, 0, 2, "2+2?"), (1, 1, 0, "3+1?"), (1, 1, 1, "3+1?"), (1, 1, 2, "3+1?")]
    step, group, index, prompt, completion, rewards, reward, correct, _ = rows[0]
    assert rewards == {"accuracy": 1.0} and reward == 1.0 and correct is True and completion.endswith("<answer>4</answer>")
    assert [r[7] for r in rows[:3]] == [True, False, False]
    sample = Sample.objects.filter(run__name="verl-run", step=1, group=0, index=0).get()
    assert sample.extra["gold"] == "4" and sample.extra["columns"] == {"pred": "4"} and sample.answer == "4"

    _write_jsonl(dump / "3.jsonl", _verl_step(3, shuffled))  # the trainer goes on; the sync restarts
    assert main(args[:-1]) == 0
    assert _synced(capsys).startswith("synced: samples=6 ")
    assert len(_rows("verl-run")) == 18 and Run.objects.get(name="verl-run").status == "succeeded"


def test_trl_completion_tables(r1lab_url, personal_token, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "grpo-out" / "completions"

    def table(step, mode=None):
        rows = []
        for prompt in ("Solve 6*7.", "Solve 9-4."):
            for j, (acc, adv) in enumerate([(1.0, 0.9), (0.0, -0.9)]):
                row = {"step": step, "prompt": prompt, "completion": f"<think>hmm</think><answer>{j}</answer>",
                       "accuracy_reward": acc, "format_reward": 1.0, "advantage": adv}
                rows.append({"mode": mode, **row} if mode else row)
        return pa.Table.from_pylist(rows)

    out.mkdir(parents=True)
    pq.write_table(table(10), out / "completions_00010.parquet")  # TRL ≤ 0.2x: completions/completions_STEP.parquet
    for mode in ("train", "eval"):  # newer TRL: completions/{mode}/, with a mode column
        (out / mode).mkdir()
        pq.write_table(table(20, mode), out / mode / "completions_00020.parquet")
    args = ["sync-rollouts", "trl", str(out), "--url", r1lab_url, "--token", personal_token, "--name", "trl-run"]
    assert main(args) == 0
    assert _synced(capsys).startswith("synced: samples=8 skipped=4")  # the eval rows
    rows = _rows("trl-run")
    assert [(s, g, i) for s, g, i, *_ in rows] == [(st, g, i) for st in (10, 20) for g in (0, 1) for i in (0, 1)]
    step, group, index, prompt, completion, rewards, reward, correct, advantage = rows[0]
    assert prompt == "Solve 6*7." and rewards == {"accuracy_reward": 1.0, "format_reward": 1.0}
    assert reward == 2.0 and correct is True and advantage == 0.9
    assert main(args) == 0 and _synced(capsys).startswith("synced: samples=0 ")  # nothing new, nothing sent


def test_generic_jsonl_and_parquet_with_a_column_map(r1lab_url, personal_token, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    dump = tmp_path / "custom"
    rows = [{"question": "q1", "response": "a", "score": 0.5, "ok": 1, "global_step": 7, "uid": "u1", "difficulty": "easy"},
            {"question": "q2", "response": "b", "score": 1.0, "ok": 1, "global_step": 7, "uid": "u2", "difficulty": "hard"},
            {"question": "q1", "response": "c", "score": 0.0, "ok": 0, "global_step": 7, "uid": "u1", "difficulty": "easy"}]
    _write_jsonl(dump / "part-0.jsonl", rows)
    pq.write_table(pa.Table.from_pylist([{**r, "global_step": 8} for r in rows]), dump / "part-1.parquet")
    args = ["sync-rollouts", "generic", str(dump), "--map", "prompt=question,completion=response,reward=score",
            "--map", "rewards.accuracy=ok,step=global_step,group=uid",
            "--url", r1lab_url, "--token", personal_token, "--name", "generic-run", "--no-finish"]
    assert main(args) == 0
    assert _synced(capsys).startswith("synced: samples=6 skipped=0")
    got = [(s, g, i, p, c, rw, r, ok) for s, g, i, p, c, rw, r, ok, _ in _rows("generic-run")]
    assert got[:3] == [(7, 0, 0, "q1", "a", {"accuracy": 1.0}, 0.5, True), (7, 0, 1, "q1", "c", {"accuracy": 0.0}, 0.0, False),
                       (7, 1, 0, "q2", "b", {"accuracy": 1.0}, 1.0, True)]
    assert [x[:3] for x in got[3:]] == [(8, 0, 0), (8, 0, 1), (8, 1, 0)]
    assert Sample.objects.get(run__name="generic-run", step=7, group=1).extra["columns"] == {"difficulty": "hard"}

    _write_jsonl(dump / "part-0.jsonl", [{**rows[1], "response": "d"}])  # the file grows: one more for u2
    assert main(args) == 0 and _synced(capsys).startswith("synced: samples=1 ")
    assert Sample.objects.get(run__name="generic-run", step=7, group=1, index=1).completion == "d"
    with pytest.raises(SystemExit, match="the same columns must be used"):  # a state is tied to its map
        main(args[:3] + ["--map", "prompt=response,completion=question"] + args[7:])


def test_a_map_naming_an_unknown_role_is_refused(tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit, match="unknown role 'prompts'"):
        main(["sync-rollouts", "generic", str(tmp_path / "x.jsonl"), "--map", "prompts=q", "--url", "http://x", "--token", "t"])
