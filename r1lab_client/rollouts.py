"""Rollout dumps of other trainers as r1lab samples (prompt, completion, rewards, group, index,
step), so that the rollout browser, the GRPO group view and the aha detector work on them.

    python -m r1lab_client sync-rollouts verl    ROLLOUT_DATA_DIR  --url … --token … --name … [--follow]
    python -m r1lab_client sync-rollouts trl     OUTPUT_DIR/completions …
    python -m r1lab_client sync-rollouts generic FILE_OR_DIR --map prompt=question,completion=response,reward=score,step=global_step,group=uid …

The formats, as the trainers write them:

- verl (`trainer.rollout_data_dir=DIR`, `RayPPOTrainer._dump_generations`): one `DIR/{step}.jsonl`
  per training step, one line per response: `input` (the decoded prompt), `output` (the decoded
  response), `gts` (ground truth), `score` (the response's total reward, token-level scores
  summed), `step`, and every per-sample list of the reward function's extra info (`acc`,
  `pred`, …; some versions add `request_id`, some `uid`). Numeric extras become the sample's
  rewards (`acc` → `accuracy`, so the browser marks it correct); `score` is its total reward.
- TRL (`GRPOTrainer` with `log_completions=True`): `OUTPUT_DIR/completions/completions_{step:05d}.parquet`
  (newer versions: under `completions/{mode}/`, with a `mode` column), columns `step`, `prompt`,
  `completion`, one column per reward function, `advantage` (and the same table logged to W&B /
  trackio as "completions"). Rows whose `mode` is not "train" are skipped. Conversational
  prompts (lists of messages) are joined into text.
- generic: JSONL or Parquet files, columns chosen once with `--map role=column`; roles:
  `prompt`, `completion`, `reward` (total), `rewards` (a column holding {name: value}),
  `rewards.NAME` (one reward function), `advantage`, `step`, `group` (an id shared by a
  prompt's completions), `index`, `gold`, `prompt_id`. Unmapped roles are found by their usual
  names (prompt/input/question, completion/output/response, reward/score, step/global_step,
  uid, advantage, gts/gold/ground_truth); without a step column the step is the last number in
  the file name.

Group membership (a GRPO group: the G completions of one prompt at a step): from an id field
when there is one (`uid`, or the column mapped to `group`), else consecutive rows with the same
prompt (TRL and generic: the trainers keep a group's completions together). verl's dump is
grouped by equal prompt text within the step instead, because verl reorders the batch (its
`balance_batch`, on by default) before dumping, which splits the runs. Groups are numbered in
order of first appearance within each step; `index` is the position within the group.

Incremental and restartable: a state file records how far each file was read (JSONL: byte
offset of the last complete line; Parquet: the file's size and time, read whole once it is
complete) and the group numbering of the latest steps, so a restarted sync continues where it
stopped and numbers the groups the same way; the server is idempotent per (step, group, index).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path

PROMPT = ("prompt", "input", "question", "query", "problem")
COMPLETION = ("completion", "output", "response", "generation")
TOTAL = ("reward", "score")
GOLD = ("gold", "gts", "ground_truth", "solution")
GROUP_ID = ("uid", "group_id", "group")
STEP = ("step", "global_step")
ADVANTAGE = ("advantage", "advantages")
# Never rewards, never passed through as extra columns: they mean something else.
_RESERVED = set(PROMPT + COMPLETION + TOTAL + GOLD + GROUP_ID + STEP + ADVANTAGE) | {
    "index", "mode", "image", "images", "prompt_id", "rewards", "length", "truncated", "think", "answer",
    "language_consistency", "language_mixed", "epoch",
}
ROLES = {"prompt", "completion", "reward", "rewards", "advantage", "step", "group", "index", "gold", "prompt_id"}
KEEP_STEPS = 4  # group numbering kept for the latest steps (a row of an older step starts a new group)


def text(x) -> str:
    """Model text: a string, or a conversation (TRL) as its messages' contents, one per line."""
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, (list, tuple)):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else text(m) for m in x)
    if isinstance(x, dict) and "content" in x:
        return str(x["content"])
    return str(x)


def number(v) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)) or (hasattr(v, "item") and not isinstance(v, (str, bytes, list, dict))):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None
    return None


def _plain(v):
    """A column value as JSON (numpy/pyarrow scalars and arrays to Python)."""
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    elif hasattr(v, "item") and not isinstance(v, (str, bytes, list, dict)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def parse_map(specs: list[str] | None) -> dict[str, str]:
    """`["prompt=question,completion=response", "reward=score"]` → {role: column}."""
    out: dict[str, str] = {}
    for spec in specs or []:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            role, sep, column = part.partition("=")
            role, column = role.strip(), column.strip()
            if not sep or not role or not column:
                raise ValueError(f"--map {part!r}: expected role=column")
            if role not in ROLES and not (role.startswith("rewards.") and len(role) > len("rewards.")):
                raise ValueError(f"--map {part!r}: unknown role {role!r} (one of {', '.join(sorted(ROLES))}, rewards.NAME)")
            out[role] = column
    return out


class RowMapper:
    """One row (a dict of columns) → (step, group key, sample). Columns are resolved once per
    set of column names: the explicit `mapping` first, then the usual names."""

    def __init__(self, mapping: dict[str, str] | None = None, *, rename_rewards: dict[str, str] | None = None):
        self.mapping = dict(mapping or {})
        self.rename = rename_rewards or {}
        self._resolved: dict[tuple, dict] = {}

    def _resolve(self, columns: tuple) -> dict:
        got = self._resolved.get(columns)
        if got is not None:
            return got
        present = set(columns)
        m = self.mapping

        def pick(role, names):
            if role in m:
                return m[role] if m[role] in present else None
            return next((n for n in names if n in present), None)

        r = {
            "prompt": pick("prompt", PROMPT), "completion": pick("completion", COMPLETION),
            "reward": pick("reward", TOTAL), "advantage": pick("advantage", ADVANTAGE),
            "step": pick("step", STEP), "gold": pick("gold", GOLD), "index": m.get("index"),
            "prompt_id": m.get("prompt_id"), "rewards_dict": m.get("rewards") or ("rewards" if "rewards" in present else None),
            "group": pick("group", GROUP_ID),
        }
        named = {role[len("rewards."):]: col for role, col in m.items() if role.startswith("rewards.")}
        explicit = bool(named) or "reward" in m or "rewards" in m
        used = {c for c in r.values() if c} | set(named.values()) | set(m.values())
        r["named"] = named
        # Without an explicit choice, every other numeric column is a reward function's value.
        r["auto_rewards"] = [] if explicit else [c for c in columns if c not in _RESERVED and c not in used]
        r["extra"] = [c for c in columns if c not in used and c not in _RESERVED]
        self._resolved[columns] = r
        return r

    def missing(self, columns) -> list[str]:
        r = self._resolve(tuple(columns))
        return [role for role in ("prompt", "completion") if r[role] is None]

    def map(self, row: dict, *, default_step: int | None = None):
        """→ (step, group key or None, sample) or a string saying why the row is skipped."""
        r = self._resolve(tuple(row))
        if r["prompt"] is None or r["completion"] is None:
            return f"no {'prompt' if r['prompt'] is None else 'completion'} column (columns: {', '.join(list(row)[:20])})"
        step = default_step
        if r["step"] is not None:
            try:
                step = int(float(row[r["step"]]))
            except (TypeError, ValueError):
                return f"step {row[r['step']]!r} is not a number"
        if step is None or step < 0:
            return "no step (map one with --map step=COLUMN, or name the files after the step)"
        rewards: dict[str, float | None] = {}
        if r["rewards_dict"] and isinstance(row.get(r["rewards_dict"]), dict):
            rewards.update({str(k): number(v) for k, v in row[r["rewards_dict"]].items()})
        for name, col in r["named"].items():
            rewards[name] = number(row.get(col))
        extra = {}
        for col in r["auto_rewards"]:
            v = number(row.get(col))
            if v is not None:
                rewards[self.rename.get(col, col)] = v
        total = number(row.get(r["reward"])) if r["reward"] else None
        if not rewards and r["reward"] is not None:
            rewards[r["reward"]] = total
        sample: dict = {"prompt": text(row[r["prompt"]]), "completion": text(row[r["completion"]]), "rewards": rewards}
        if total is not None:
            sample["reward"] = total
        if r["advantage"] is not None and number(row.get(r["advantage"])) is not None:
            sample["advantage"] = number(row[r["advantage"]])
        if r["gold"] is not None and row.get(r["gold"]) is not None:
            gold = _plain(row[r["gold"]])
            sample["gold"] = gold if isinstance(gold, str) else json.dumps(gold)
        if r["prompt_id"] is not None and row.get(r["prompt_id"]) is not None:
            sample["prompt_id"] = str(_plain(row[r["prompt_id"]]))[:200]
        for col in r["extra"]:
            if col in rewards or self.rename.get(col) in rewards:
                continue
            v = _plain(row.get(col))
            if v is not None:
                extra[col] = v
        if extra:
            sample["columns"] = extra  # kept with the sample (the server keeps unknown keys)
        key = None
        if r["group"] is not None and row.get(r["group"]) is not None:
            key = "id:" + str(_plain(row[r["group"]]))
        index = None
        if r["index"] is not None:
            try:
                index = int(row[r["index"]])
            except (TypeError, ValueError):
                index = None
        return step, key, sample, index


class Grouper:
    """Numbers the GRPO groups of each step, in order of first appearance, and each sample's
    position in its group. `by`: "id" groups equal keys anywhere in the step; "consecutive" (no
    id) starts a new group when the prompt changes; "prompt" (no id) groups equal prompts
    anywhere in the step. `state` is a plain dict saved with the sync's state file."""

    def __init__(self, by: str, state: dict):
        self.by = by
        self.state = state
        self.steps: dict = state.setdefault("steps", {})

    def assign(self, step: int, id_key: str | None, prompt: str) -> tuple[int, int]:
        st = self.steps.get(str(step))
        if st is None:
            st = self.steps[str(step)] = {"n": 0}
            self._prune()
        if id_key is None and self.by == "consecutive":
            h = _h(prompt)
            if st.get("last") == h:
                st["i"] += 1
                return st["g"], st["i"]
            st["last"], st["g"], st["i"] = h, st["n"], 0
            st["n"] += 1
            return st["g"], 0
        h = _h(id_key if id_key is not None else "p:" + prompt)
        keys = st.setdefault("k", {})
        got = keys.get(h)
        if got is None:
            got = keys[h] = [st["n"], -1]
            st["n"] += 1
        got[1] += 1
        return got[0], got[1]

    def _prune(self) -> None:
        """Keep the key maps of the latest KEEP_STEPS steps only (the state file stays small); a
        row of an older step then opens a new group (its number is never reused)."""
        if len(self.steps) > KEEP_STEPS:
            for step in list(self.steps)[:-KEEP_STEPS]:
                st = self.steps[step]
                if len(st) > 1:
                    self.steps[step] = {"n": st["n"]}


def _h(s: str) -> str:
    return hashlib.blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


_NUMBER = re.compile(r"(\d+)")


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in _NUMBER.split(str(p))]


def _ours(path: Path, root: Path) -> bool:
    """The sync's own files (its state, the client's spool beside it) are not dumps."""
    return any(part.startswith(".r1lab-sync") for part in path.relative_to(root).parts)


def step_from_name(path: Path) -> int | None:
    numbers = _NUMBER.findall(path.stem)
    return int(numbers[-1]) if numbers else None


KINDS = {
    # kind: (file patterns, grouping without an id, reward columns renamed)
    "verl": (("*.jsonl",), "prompt", {"acc": "accuracy"}),
    "trl": (("completions*.parquet",), "consecutive", {}),
    "generic": (("*.jsonl", "*.parquet"), "consecutive", {}),
}


class RolloutTailer:
    """Reads new rows of a dump (a file or a folder, recursively) and queues them as samples on
    an r1lab_client Run. `state` (a dict, saved by the caller after the run flushed) holds the
    per-file progress and the group numbering."""

    def __init__(self, kind: str, path: str | os.PathLike, state: dict, mapping: dict[str, str] | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        self.kind, self.path = kind, Path(path)
        self.patterns, by, rename = KINDS[kind]
        self.mapper = RowMapper(mapping, rename_rewards=rename)
        self.files: dict = state.setdefault("files", {})
        self.grouper = Grouper(by, state.setdefault("groups", {}))
        self.warned: set[str] = set()
        self.samples = self.skipped = 0

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(f"r1lab_client: {message}", file=sys.stderr)

    def discover(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            return []
        found = {p for pattern in self.patterns for p in self.path.rglob(pattern) if p.is_file() and not _ours(p, self.path)}
        return sorted(found, key=_natural)

    def poll(self, run, budget: int = 50_000) -> bool:
        """Queue up to `budget` new rows on `run`. True when more are waiting."""
        left = budget
        for path in self.discover():
            rel = str(path.relative_to(self.path)) if path != self.path else path.name
            if path.suffix == ".parquet":
                left -= self._parquet(run, path, rel)
            else:
                left -= self._jsonl(run, path, rel, left)
            if left <= 0:
                return True
        return False

    def _jsonl(self, run, path: Path, rel: str, budget: int) -> int:
        st = self.files.setdefault(rel, {"offset": 0})
        size = path.stat().st_size
        if size < st["offset"]:
            self._warn(rel + ":shrank", f"{path} is shorter than what was read of it; reading it from the start")
            st["offset"] = 0
        if size == st["offset"]:
            return 0
        rows, n = [], 0
        with open(path, "rb") as f:
            f.seek(st["offset"])
            offset = st["offset"]
            for line in f:
                if not line.endswith(b"\n"):
                    try:  # a last line without its newline: taken if it is whole JSON
                        row = json.loads(line)
                    except ValueError:
                        break
                else:
                    row = None
                offset += len(line)
                if line.strip():
                    if row is None:
                        try:
                            row = json.loads(line)
                        except ValueError as exc:
                            self._warn(f"{rel}:{offset}", f"{path}: a line that is not JSON is skipped ({exc})")
                            self.skipped += 1
                            continue
                    if isinstance(row, dict):
                        rows.append(row)
                    n += 1
                if n >= budget:
                    break
        self._queue(run, rows, path)
        st["offset"] = offset
        return n

    def _parquet(self, run, path: Path, rel: str) -> int:
        stat = path.stat()
        seen = self.files.get(rel)
        if seen and seen.get("size") == stat.st_size and seen.get("mtime") == stat.st_mtime:
            return 0
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise SystemExit("reading Parquet needs pyarrow: pip install pyarrow") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # noqa: BLE001 - a file still being written has no footer yet
            self._warn(rel + f":{stat.st_size}", f"{path}: not readable yet ({type(exc).__name__}: {exc}); retried later")
            return 0
        self._queue(run, rows, path)
        self.files[rel] = {"size": stat.st_size, "mtime": stat.st_mtime}
        return len(rows)

    def _queue(self, run, rows: list[dict], path: Path) -> None:
        default_step = step_from_name(path)
        batch: list[dict] = []
        batch_step = None
        for row in rows:
            mode = row.get("mode")
            if mode is not None and mode != "train":
                self.skipped += 1
                continue
            got = self.mapper.map(row, default_step=default_step)
            if isinstance(got, str):
                self._warn(f"{path}:{got[:40]}", f"{path}: rows skipped: {got}")
                self.skipped += 1
                continue
            step, id_key, sample, index = got
            group, position = self.grouper.assign(step, id_key, sample["prompt"])
            sample["group"], sample["index"] = group, position if index is None else index
            if step != batch_step and batch:
                run.log_samples(batch, step=batch_step)
                batch = []
            batch_step = step
            batch.append(sample)
            self.samples += 1
        if batch:
            run.log_samples(batch, step=batch_step)
