"""A frozen dataset version as a Hugging Face `datasets` folder (issue 18). Pure, no ORM.

    <name>/README.md                              the dataset card (YAML metadata + what, how, counts)
    <name>/data/train-00000-of-0000N.parquet      config "default": one row per example (every column)
    <name>/stepwise/train-00000-of-0000N.parquet  config "stepwise": TRL's stepwise-supervision layout
    <name>/changelog.json                         the example ids added / removed / changed since the previous version

`datasets.load_dataset("<name>")` reads the default config, `load_dataset("<name>", "stepwise")`
the process-supervision rows. The Parquet schema is explicit (label values are a struct typed from
the project's label set: scale → int64, yes/no → bool, choice and text → string), so empty lists
and missing answers keep their types and the folder reads back exactly as written. `read_rows`
reads the default config back for the import (services.import_jobs through interchange.py).
"""
from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_ROWS = 10_000
DEFAULT_DIR, STEPWISE_DIR = "data", "stepwise"

_VALUE_TYPES = {"scale": pa.int64(), "bool": pa.bool_(), "choice": pa.string(), "text": pa.string()}


def label_values_type(label_schema: list[dict]) -> pa.DataType:
    return pa.struct([pa.field(q["key"], _VALUE_TYPES[q["type"]]) for q in label_schema])


def default_schema(label_schema: list[dict]) -> pa.Schema:
    text = pa.string()
    revision = pa.struct([
        pa.field("number", pa.int64()), pa.field("author", text), pa.field("created_at", text), pa.field("note", text),
        pa.field("prompt", text), pa.field("reasoning", text), pa.field("summary", text), pa.field("gold_answer", text),
        pa.field("language", text),
    ])
    return pa.schema([
        pa.field("id", pa.int64()), pa.field("prompt", text), pa.field("reasoning", text), pa.field("summary", text),
        pa.field("completion", text),
        pa.field("messages", pa.list_(pa.struct([pa.field("role", text), pa.field("content", text)]))),
        pa.field("gold_answer", text), pa.field("language", text), pa.field("source", text), pa.field("tags", pa.list_(text)),
        pa.field("row_hash", text),
        pa.field("labels", pa.list_(pa.struct([pa.field("annotator", text), pa.field("values", label_values_type(label_schema))]))),
        pa.field("steps", pa.list_(text)), pa.field("step_labels", pa.list_(text)), pa.field("first_wrong_step", pa.int64()),
        pa.field("step_annotations", pa.list_(pa.struct([
            pa.field("annotator", text), pa.field("labels", pa.list_(text)), pa.field("notes", pa.list_(text)),
        ]))),
        pa.field("revisions", pa.list_(revision)),
    ])


STEPWISE_SCHEMA = pa.schema([
    pa.field("prompt", pa.string()), pa.field("completions", pa.list_(pa.string())), pa.field("labels", pa.list_(pa.bool_())),
    pa.field("step_labels", pa.list_(pa.string())), pa.field("first_wrong_step", pa.int64()), pa.field("id", pa.int64()),
])


def _write_shards(directory: Path, rows: Iterable[dict], *, total: int, schema: pa.Schema, shard_rows: int) -> int:
    """Rows into train-0000k-of-0000n.parquet files of `shard_rows` rows (n from `total`)."""
    directory.mkdir(parents=True, exist_ok=True)
    shards = max(1, math.ceil(total / shard_rows))
    written, batch, index = 0, [], 0

    def flush():
        nonlocal index, batch
        pq.write_table(pa.Table.from_pylist(batch, schema=schema), directory / f"train-{index:05d}-of-{shards:05d}.parquet")
        index += 1
        batch = []

    for row in rows:
        batch.append(row)
        written += 1
        if len(batch) == shard_rows:
            flush()
    if batch or index == 0:
        flush()
    if written != total:
        raise ValueError(f"expected {total} rows, got {written}")
    return written


def write_folder(path: Path, *, rows: Iterable[dict], total: int, stepwise: list[dict], label_schema: list[dict], card: str,
                 extra_files: dict[str, str] | None = None, shard_rows: int = SHARD_ROWS) -> None:
    """Write the folder at `path` (which must not exist yet): card, default shards, stepwise shards,
    and `extra_files` ({name: text}, e.g. the changelog)."""
    path.mkdir(parents=True)
    for name, text in (extra_files or {}).items():
        (path / name).write_text(text, encoding="utf-8")
    _write_shards(path / DEFAULT_DIR, rows, total=total, schema=default_schema(label_schema), shard_rows=shard_rows)
    if stepwise:
        _write_shards(path / STEPWISE_DIR, stepwise, total=len(stepwise), schema=STEPWISE_SCHEMA, shard_rows=shard_rows)
    (path / "README.md").write_text(card, encoding="utf-8")


# --- the card ---------------------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _yaml(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML string, quotes and colons included


def _md(text) -> str:
    """Text from the project (names, notes) inside the card's markdown: one line, table-safe."""
    return " ".join(str(text).split()).replace("|", "\\|")


def card(*, name: str, description: str, version: int, content_hash: str, created_at: str, frozen_by: str, note: str,
         changelog: dict, stats: dict, languages: list[str], rows: int, stepwise_rows: int) -> str:
    """README.md: YAML metadata (licence, languages, size, the two configs) and the version's story."""
    made = stats.get("made_with", {})
    license_id = made.get("license") or "unknown"
    configs = [
        "- config_name: default", "  default: true", "  data_files:", "  - split: train", f"    path: {DEFAULT_DIR}/train-*.parquet",
    ]
    if stepwise_rows:
        configs += ["- config_name: stepwise", "  data_files:", "  - split: train", f"    path: {STEPWISE_DIR}/train-*.parquet"]
    meta = [
        "---", f"license: {_yaml(license_id)}", "language:", *[f"- {_yaml(lang)}" for lang in languages],
        f"pretty_name: {_yaml(f'{name} v{version}')}", "size_categories:", f"- {_size_category(rows)}",
        "task_categories:", "- text-generation", "tags:", "- r1lab", "- reasoning", "- chain-of-thought",
        *(["- process-supervision"] if stepwise_rows else []), "configs:", *configs, "---",
    ]
    status = stats.get("status_counts", {})
    step_counts = stats.get("step_labels", {})
    label_lines = []
    for key, counts in stats.get("labels", {}).items():
        label_lines.append(f"| {_md(key)} | " + ", ".join(f"{_md(v)}: {n}" for v, n in counts.items()) + " |")
    body = [
        f"# {_md(name)} · version {version}", "",
        _md(description) if description else "Cold-start chain-of-thought examples curated in r1lab.", "",
        "| | |", "|---|---|",
        f"| version | {version} |", f"| content hash | `{content_hash}` |", f"| examples | {rows} |",
        f"| stepwise rows (process supervision) | {stepwise_rows} |", f"| licence | {_md(license_id)} |",
        f"| frozen | {created_at} by {_md(frozen_by or '?')} |", *([f"| note | {_md(note)} |"] if note else []), "",
        "## Changelog", "",
        (f"Since version {changelog.get('previous')}: " if changelog.get("previous") else "First version: ")
        + f"{len(changelog.get('added', []))} added, {len(changelog.get('removed', []))} removed, "
        + f"{len(changelog.get('changed', []))} changed (example ids in `changelog.json`).", "",
        "## Counts", "",
        "Examples of the project by review status when this version was frozen (a version holds the approved ones):", "",
        "| status | examples |", "|---|---|", *[f"| {_md(s)} | {n} |" for s, n in status.items()], "",
        "Labels in this version (every annotator's answers):", "",
        "| label | answers |", "|---|---|", *(label_lines or ["| – | none |"]), "",
        "Step labels in this version (the consensus of the annotators, per step):", "",
        "| | |", "|---|---|",
        *[f"| {_md(k.replace('_', ' '))} | {v} |" for k, v in step_counts.items()], "",
        "## How it was made", "",
        f"Curated in r1lab's curation studio, project “{_md(made.get('project', name))}” (target language "
        f"{_md(made.get('target_language', '?'))}, {made.get('overlap', 1)} annotator(s) per example). Each example was "
        "imported or sent from a rollout, edited and labelled by its annotators (every save is a revision, kept in "
        "`revisions`), and approved by a reviewer who neither wrote it nor last edited it (four eyes). Checks on every "
        "save: format, answer against the gold answer, language consistency, reflection count (the R1 reward functions).",
        "",
        f"Steps: the reasoning cut by the rule “{_md(made.get('step_split', 'auto'))}”; each annotator marked steps correct, "
        "incorrect or neutral; `step_labels` is the per-step majority (a tie stays empty); the first wrong step is the "
        "earliest incorrect step when every step before it is labelled (-1: none wrong; empty: not known).", "",
        "Label set: " + ", ".join(f"`{q['key']}` ({q['type']}: {_md(q.get('question', ''))})" for q in made.get("label_schema", [])),
        "",
        "## Configs and columns", "",
        "- `default`: `id` (the example in r1lab), `prompt`, `reasoning`, `summary`, `completion` "
        "(`<think>reasoning</think><answer>summary</answer>`), `messages` (chat format for SFT), `gold_answer`, "
        "`language`, `source`, `tags`, `row_hash`, `labels` (per annotator), `steps`, `step_labels`, "
        "`first_wrong_step`, `step_annotations` (per annotator), `revisions` (the example's history up to this version).",
        "- `stepwise`: TRL's stepwise-supervision layout for process reward models: `prompt`, `completions` (the steps "
        "up to and including the first wrong one), `labels` (True: not a mistake, neutral included; False: the first "
        "wrong step), plus `step_labels`, `first_wrong_step` and `id`. Only examples whose first wrong step is known.",
        "",
        "```python", "from datasets import load_dataset", "sft = load_dataset(\"path/to/this/folder\", split=\"train\")",
        *(["prm = load_dataset(\"path/to/this/folder\", \"stepwise\", split=\"train\")"] if stepwise_rows else []), "```", "",
    ]
    return "\n".join(meta + [""] + body)


# --- reading the folder back (the import) ----------------------------------------------------------------
def read_rows(files: dict[str, bytes]) -> Iterator[tuple[str, dict]]:
    """(shard name, row) for every row of the default config's shards among `files` ({path: bytes}, the
    folder's files as in a zip), shards in name order. ValueError for a file that is not Parquet."""
    shards = sorted(name for name in files if _in_default_config(name))
    for name in shards:
        try:
            rows = pq.read_table(io.BytesIO(files[name])).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{name}: {exc}") from exc
        for row in rows:
            yield name, row


def _in_default_config(name: str) -> bool:
    parts = name.split("/")
    return name.endswith(".parquet") and len(parts) >= 2 and parts[-2] == DEFAULT_DIR


def looks_like_folder(names: list[str]) -> bool:
    return any(_in_default_config(n) for n in names)
