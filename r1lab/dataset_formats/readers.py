"""Reading an uploaded dataset file into numbered rows. No Django, no ORM.

Four kinds, decided by the file name (`kind_from_filename`):

- `jsonl` (`.jsonl`, `.ndjson`, `.json`): one JSON object per line; rows are numbered by their
  line in the file (blank lines are skipped but counted);
- `csv`: a header row, then records; a row's number is the line where its record starts (a
  quoted multi-line cell counts its lines); every cell is text, so list and object columns come
  as JSON text (`Table.text_cells`);
- `parquet` (pyarrow): rows numbered from 1, read a record batch at a time;
- `arrow`: a `datasets` `save_to_disk` folder uploaded as a `.zip`, `.tar`, `.tar.gz` or `.tgz`
  of the folder, unpacked into a temporary directory (paths that leave it, links and special files
  refused, sizes bounded before anything is written) and read with `datasets.load_from_disk`.
  A `DatasetDict` folder has splits: `train` unless another is asked for.

Why an archive upload rather than a path on the server's data disk: the upload goes through the
same door as every other file (the body limit, the all-or-nothing preview) and a web user never
names a path the server then reads. A set larger than the upload limit (`R1LAB_MAX_BODY_BYTES`)
is filtered or sharded first (`ds.filter(...)`, `ds.shard(...)`), which a cold-start or prompt
set of a few thousand rows never needs.

Errors: `FileError` when the file as a whole cannot be read (the message is for the user);
a row that is not an object is yielded as a `RowError` in its place, so that its number is kept.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("jsonl", "csv", "parquet", "arrow")
_SUFFIXES = (
    (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"), (".parquet", "parquet"),
    (".zip", "arrow"), (".tar.gz", "arrow"), (".tgz", "arrow"), (".tar", "arrow"),
)
ACCEPTED = ".jsonl, .csv, .parquet, or a datasets save_to_disk folder as .zip / .tar.gz"
BATCH_ROWS = 1000
# An archive may unpack to at most this much (a zip bomb stops at its declared sizes), in at most
# this many files; a save_to_disk folder is a few files per shard.
MAX_UNPACKED_BYTES = 2 << 30
MAX_MEMBERS = 10_000


class FileError(ValueError):
    """The file as a whole cannot be read; the message says why, for the user."""


class RowError(ValueError):
    """One row cannot be used; the message says why, for the user."""


def kind_from_filename(name: str) -> str | None:
    lower = name.lower()
    return next((kind for suffix, kind in _SUFFIXES if lower.endswith(suffix)), None)


@dataclass
class Table:
    """A file's rows, numbered as the user sees them (`unit`: `line` of a text file, `row` of a table)."""

    kind: str
    columns: list[str]
    _rows: Callable[[], Iterator[tuple[int, dict | RowError]]]
    unit: str = "line"
    text_cells: bool = False  # CSV: lists and objects arrive as JSON text
    num_rows: int | None = None  # known up front for Parquet and Arrow
    splits: list[str] = field(default_factory=list)  # a DatasetDict folder's splits
    split: str = ""

    def rows(self) -> Iterator[tuple[int, dict | RowError]]:
        """(number, row) for every row, in file order; may be called again (re-reads)."""
        return self._rows()

    def sample(self, n: int = 20) -> list[dict]:
        """The first `n` rows that are objects (for format detection)."""
        out: list[dict] = []
        for _, raw in self.rows():
            if isinstance(raw, dict):
                out.append(raw)
                if len(out) >= n:
                    break
        return out


@contextmanager
def open_table(data: bytes, *, kind: str, split: str = "", max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> Iterator[Table]:
    """The rows of an uploaded file (its bytes) of `kind`; FileError when it cannot be read.

    A context manager because an `arrow` archive lives in a temporary directory while it is read.
    """
    if kind == "jsonl":
        yield _jsonl_table(_utf8(data))
    elif kind == "csv":
        yield _csv_table(_utf8(data))
    elif kind == "parquet":
        yield _parquet_table(data)
    elif kind == "arrow":
        with tempfile.TemporaryDirectory(prefix="r1lab-dataset-") as tmp:
            root = _unpack(data, Path(tmp), max_unpacked_bytes=max_unpacked_bytes)
            yield _arrow_table(root, split=split)
    else:
        raise ValueError(f"unknown kind {kind!r}")


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileError(f"the file is not UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _first_seen(keys_per_row) -> list[str]:
    seen: dict[str, None] = {}
    for keys in keys_per_row:
        for k in keys:
            seen.setdefault(str(k), None)
    return list(seen)


def _jsonl_table(text: str) -> Table:
    items: list[tuple[int, dict | RowError]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            items.append((line_no, RowError(f"not valid JSON: {exc.msg} (column {exc.colno})")))
            continue
        if not isinstance(value, dict):
            items.append((line_no, RowError(f"a row must be a JSON object, got {type(value).__name__}")))
            continue
        items.append((line_no, value))
    columns = _first_seen(raw.keys() for _, raw in items if isinstance(raw, dict))
    return Table(kind="jsonl", columns=columns, _rows=lambda: iter(items))


def _csv_table(text: str) -> Table:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if not header:
            raise FileError("the CSV file has no header row")
        items: list[tuple[int, dict | RowError]] = []
        line = reader.line_num + 1
        for record in reader:
            if None in record:  # more cells than headers
                items.append((line, RowError(f"{len(record[None])} more cell(s) than the header has columns")))
            else:
                items.append((line, {k.strip(): v for k, v in record.items() if k is not None}))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise FileError(f"CSV error: {exc}") from exc
    return Table(kind="csv", columns=[h.strip() for h in header], _rows=lambda: iter(items), text_cells=True)


def _parquet_table(data: bytes) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data))
        columns, num_rows = list(meta.schema_arrow.names), meta.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise FileError(f"not a readable Parquet file ({exc})") from exc

    def rows():
        n = 0
        try:
            for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=BATCH_ROWS):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except (pa.ArrowException, OSError) as exc:
            raise FileError(f"the Parquet file is damaged after row {n} ({exc})") from exc

    return Table(kind="parquet", columns=columns, _rows=rows, unit="row", num_rows=num_rows)


def _arrow_table(root: Path, *, split: str) -> Table:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise FileError(f"datasets.load_from_disk could not read the folder ({exc})") from exc
    splits: list[str] = []
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if not splits:
            raise FileError("the DatasetDict folder has no splits")
        split = split or ("train" if "train" in splits else splits[0])
        if split not in splits:
            raise FileError(f"the folder has no split {split!r} (it has {', '.join(splits)})")
        ds = loaded[split]
    else:
        if split:
            raise FileError("the folder holds one Dataset, not a DatasetDict: it has no splits to choose from")
        ds = loaded

    def rows():
        n = 0
        for batch in ds.iter(batch_size=BATCH_ROWS):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys)):
                n += 1
                yield n, dict(zip(keys, values))

    return Table(kind="arrow", columns=list(ds.column_names), _rows=rows, unit="row", num_rows=ds.num_rows,
                 splits=splits, split=split if splits else "")


def _unpack(data: bytes, dest: Path, *, max_unpacked_bytes: int) -> Path:
    """Unpack a zip / tar(.gz) into `dest`; the folder that holds the save_to_disk files."""
    buf = io.BytesIO(data)
    if zipfile.is_zipfile(buf):
        _unzip(zipfile.ZipFile(buf), dest, max_unpacked_bytes)
    else:
        buf.seek(0)
        try:
            archive = tarfile.open(fileobj=buf, mode="r:*")
        except tarfile.TarError as exc:
            raise FileError("not a .zip or .tar(.gz) archive of a datasets save_to_disk folder") from exc
        with archive:
            _untar(archive, dest, max_unpacked_bytes)
    # The folder may be at the top of the archive or inside one directory (zip -r name.zip name/).
    markers = sorted((p.parent for p in dest.rglob("*") if p.name in ("state.json", "dataset_dict.json")),
                     key=lambda p: len(p.parts))
    if not markers:
        raise FileError("the archive holds no datasets save_to_disk folder (no state.json or dataset_dict.json)")
    return markers[0]


def _check_sizes(count: int, total: int, max_unpacked_bytes: int) -> None:
    if count > MAX_MEMBERS:
        raise FileError(f"the archive has {count:,} files (at most {MAX_MEMBERS:,})")
    if total > max_unpacked_bytes:
        raise FileError(f"the archive unpacks to {total:,} bytes (at most {max_unpacked_bytes:,})")


def _unzip(archive: zipfile.ZipFile, dest: Path, max_unpacked_bytes: int) -> None:
    members = archive.infolist()
    _check_sizes(len(members), sum(m.file_size for m in members), max_unpacked_bytes)
    root = dest.resolve()
    for member in members:
        mode = member.external_attr >> 16
        if mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):  # a link or a device: refused
            raise FileError(f"the archive holds {member.filename!r}, which is not a plain file")
        target = (root / member.filename).resolve()
        if not target.is_relative_to(root):
            raise FileError(f"the archive holds a path outside its folder: {member.filename!r}")
        if member.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # ZipExtFile stops at the member's declared size, so the check above bounds what is written.
        with archive.open(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)


def _untar(archive: tarfile.TarFile, dest: Path, max_unpacked_bytes: int) -> None:
    try:
        members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise FileError(f"the archive is damaged ({exc})") from exc
    _check_sizes(len(members), sum(m.size for m in members if m.isfile()), max_unpacked_bytes)
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise FileError(f"the archive holds {member.name!r}, which is not a plain file")
    try:
        # The "data" filter refuses absolute paths, `..`, and anything else that would leave `dest`.
        archive.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise FileError(f"the archive cannot be unpacked ({exc})") from exc
