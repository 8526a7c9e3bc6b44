"""The metric store's SQL: bulk point ingestion and the min/max downsampler.

PostgreSQL is the production store. Points go in with one statement per batch
(`INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`: one round-trip, no ORM object per
point, idempotent through the (series, step) primary key). Reads of long series go through
lazily built rollups (min/max/sum per bucket of 8**level steps), so a 1,000,000-point series is
answered from a few thousand rows; extremes keep their own step and wall time, so a one-step
spike survives downsampling at every level.

SQLite (embedded mode) works the same way functionally: points go in with `executemany` and
`ON CONFLICT DO NOTHING`, and the downsampler reads raw rows and buckets them in Python.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import psycopg
from django.db import connection, transaction

from r1lab.tracking.ingest import MAX_STEP

ROLLUP_LEVELS = 6  # bucket widths 8, 64, …, 262144 steps
_BASE_BITS = 3  # 8 = 2**3: bucket of level l = step >> (3*l)

# (run_id, key) -> series id, for committed series. Series are never renamed; deleting a run
# (tracked_run_delete) forgets its entries.
_SERIES_CACHE: dict[tuple[int, str], int] = {}
_SERIES_CACHE_MAX = 200_000


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


class SeriesLimitError(ValueError):
    """A batch would give its run more distinct metric keys than it may have."""


def series_ids(*, run_id: int, keys: Sequence[str], max_keys: int | None = None) -> dict[str, int]:
    """Series id for each key of a run, creating the missing ones (cached per process). With
    `max_keys`, a batch whose new keys would take the run past that many series is refused
    (SeriesLimitError) before anything is created; the count is read only when keys are new."""
    out: dict[str, int] = {}
    missing = []
    for key in keys:
        sid = _SERIES_CACHE.get((run_id, key))
        if sid is None:
            missing.append(key)
        else:
            out[key] = sid
    if not missing:
        return out
    with connection.cursor() as cur:
        if max_keys is not None:
            marks = ",".join(["%s"] * len(missing))
            cur.execute(f"SELECT count(*), count(*) FILTER (WHERE key IN ({marks})) FROM tracking_series WHERE run_id = %s"
                        if is_postgres() else
                        f"SELECT count(*), sum(key IN ({marks})) FROM tracking_series WHERE run_id = %s", [*missing, run_id])
            have, known = cur.fetchone()
            new = len(missing) - (known or 0)
            if have + new > max_keys:
                raise SeriesLimitError(
                    f"metrics: this batch adds {new} new keys to the run's {have}; a run may have at most {max_keys} "
                    f"distinct metric keys (R1LAB_MAX_KEYS_PER_RUN). Nothing of the batch was stored")
        if is_postgres():
            cur.execute(
                "INSERT INTO tracking_series (run_id, key, rollup_upto) SELECT %s, k, -1 FROM unnest(%s::text[]) AS k "
                "ON CONFLICT (run_id, key) DO NOTHING",
                [run_id, missing],
            )
            cur.execute("SELECT key, id FROM tracking_series WHERE run_id = %s AND key = ANY(%s)", [run_id, missing])
        else:
            cur.executemany(
                "INSERT INTO tracking_series (run_id, key, rollup_upto) VALUES (%s, %s, -1) ON CONFLICT (run_id, key) DO NOTHING",
                [(run_id, k) for k in missing],
            )
            marks = ",".join(["%s"] * len(missing))
            cur.execute(f"SELECT key, id FROM tracking_series WHERE run_id = %s AND key IN ({marks})", [run_id, *missing])
        rows = cur.fetchall()
    found = {(run_id, key): sid for key, sid in rows}
    for key, sid in rows:
        out[key] = sid

    def remember():
        if len(_SERIES_CACHE) > _SERIES_CACHE_MAX:
            _SERIES_CACHE.clear()
        _SERIES_CACHE.update(found)

    # Cached only once committed: a rolled-back series (and its id, which SQLite may hand out
    # again) never lingers in the cache.
    transaction.on_commit(remember)
    return out


def forget_run(run_id: int) -> None:
    for k in [k for k in _SERIES_CACHE if k[0] == run_id]:
        _SERIES_CACHE.pop(k, None)


# One statement stores a batch and keeps its series' summaries: the insert skips what is stored
# (a client's retry, a (key, step) logged twice: the first value wins); only the rows it inserted
# (RETURNING) are folded into the summaries, which is exact for new and skipped points alike; and
# a late point (below a series' rollup_upto) drops the rollups it falls into. The series rows are
# locked in id order first (by insert_points), so two batches of one run never deadlock.
_PG_INGEST = """
WITH ins AS (
    INSERT INTO tracking_point (series_id, step, value, ts)
    SELECT * FROM unnest(%s::int8[], %s::int8[], %s::float8[], %s::float8[])
    ON CONFLICT DO NOTHING
    RETURNING series_id, step, value
),
agg AS (
    SELECT series_id AS sid, min(value) AS mn, max(value) AS mx, max(step) AS ls,
           (array_agg(value ORDER BY step DESC))[1] AS lv
    FROM ins GROUP BY series_id
),
lows(sid, lo) AS (SELECT * FROM unnest(%s::int8[], %s::int8[])),
late AS (
    SELECT l.sid, l.lo FROM lows l JOIN tracking_series s ON s.id = l.sid WHERE s.rollup_upto >= l.lo
),
dropped AS (
    DELETE FROM tracking_rollup r USING late
    WHERE r.series_id = late.sid AND r.bucket >= (late.lo >> (3 * r.level))
),
upd AS (
    UPDATE tracking_series s SET
        rollup_upto = CASE WHEN s.rollup_upto >= l.lo THEN ((l.lo >> 3) << 3) - 1 ELSE s.rollup_upto END,
        min_value = LEAST(s.min_value, agg.mn),
        max_value = GREATEST(s.max_value, agg.mx),
        last_value = CASE WHEN agg.ls IS NOT NULL AND (s.last_step IS NULL OR agg.ls >= s.last_step)
                          THEN agg.lv ELSE s.last_value END,
        last_step = GREATEST(s.last_step, agg.ls)
    FROM lows l LEFT JOIN agg ON agg.sid = l.sid
    WHERE s.id = l.sid AND (agg.sid IS NOT NULL OR s.rollup_upto >= l.lo)
)
SELECT count(*) FROM ins
"""


def _pg_array(values) -> str:
    """A PostgreSQL array literal; repr() of a float round-trips exactly (values are validated finite)."""
    return "{" + ",".join(map(repr, values)) + "}"


# One row of COPY's binary format for (series_id int8, step int8, value float8, ts float8): the field
# count, then each field's length and big-endian value.
_COPY_ROW = np.dtype([("n", ">i2"), ("l0", ">i4"), ("sid", ">i8"), ("l1", ">i4"), ("step", ">i8"),
                      ("l2", ">i4"), ("value", ">f8"), ("l3", ">i4"), ("ts", ">f8")])
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"


def _copy_binary(sids, steps, values, tss) -> bytes:
    """The batch in COPY's binary format, built column by column (no per-row Python, no float to
    text and back: psycopg's write_row formats row by row, several times slower)."""
    rows = np.empty(len(sids), dtype=_COPY_ROW)
    rows["n"] = 4
    for f in ("l0", "l1", "l2", "l3"):
        rows[f] = 8
    rows["sid"], rows["step"], rows["value"], rows["ts"] = sids, steps, values, tss
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def insert_points(*, sids: list[int], steps: list[int], values: list[float], tss: list[float]) -> int:
    """Store the points (idempotent); returns how many were new. Call inside a transaction.

    PostgreSQL: the series rows are locked in id order, which also reads each one's last step.
    A batch whose every point lies past its series' last step, each (series, step) once, is what a
    trainer logs step after step: nothing stored can conflict with it and no rollup covers it, so
    it is COPYed straight in (the fastest path there is; no savepoint, since it cannot fail on the
    key) and its own min/max/last per series are folded into the summaries: three statements.
    Anything else (a client's retry, a late or repeated step) goes through _PG_INGEST, which skips
    what is stored and keeps summaries and rollups exact. SQLite (the embedded database): an
    executemany, then the touched ranges are read back.
    """
    if not sids:
        return 0
    # One pass over the batch: per series [low step, high step, min, max, value at the high step,
    # whether its steps strictly rise through the batch].
    batch: dict[int, list] = {}
    get = batch.get
    for sid, step, v in zip(sids, steps, values):
        a = get(sid)
        if a is None:
            batch[sid] = [step, step, v, v, v, True]
            continue
        if step > a[1]:
            a[1], a[4] = step, v
        else:
            a[5] = False
            if step < a[0]:
                a[0] = step
        if v < a[2]:
            a[2] = v
        elif v > a[3]:
            a[3] = v
    order = sorted(batch)
    lows = {sid: batch[sid][0] for sid in order}
    if not is_postgres():
        with connection.cursor() as cur:
            cur.executemany(
                "INSERT INTO tracking_point (series_id, step, value, ts) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                list(zip(sids, steps, values, tss)),
            )
            stored = max(cur.rowcount, 0)
        refresh_summaries(lows=lows, highs={sid: batch[sid][1] for sid in order})
        return stored
    # Django's cursor binds parameters client-side (big arrays would be quoted into the SQL by
    # Python code); a plain psycopg cursor on the same connection shares the transaction.
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(_LOCK_SERIES, [_pg_array(order)])
        last = dict(cur.fetchall())
        if all(batch[sid][5] and (last.get(sid) is None or batch[sid][0] > last[sid]) for sid in order):
            with cur.copy("COPY tracking_point (series_id, step, value, ts) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_copy_binary(sids, steps, values, tss))
            cur.execute(_PG_FOLD, [_pg_array(order), *(_pg_array(batch[sid][i] for sid in order) for i in (2, 3, 1, 4))])
            return len(sids)
        cur.execute(_PG_INGEST, [_pg_array(sids), _pg_array(steps), _pg_array(values), _pg_array(tss),
                                 _pg_array(order), _pg_array(lows[s] for s in order)])
        return cur.fetchone()[0]


# --- per-series summaries -------------------------------------------------------------------------
#
# Series.last_step/last_value/min_value/max_value: what the runs list filters and sorts by
# (`reward.last > 0.6`), and the alarms' and the runs list's "latest value". Kept by ingest in the
# batch's own transaction: on PostgreSQL by _PG_FOLD from the batch's own summary when the batch
# was all new, else by _PG_INGEST from the rows its insert returned; on
# SQLite the points of each touched series within the batch's step range are read back (an index
# range scan of what was just written). Series rows are locked in id order first: two batches of
# one run never deadlock here. A rewind recomputes its run's summaries.

# Locks the series rows in id order; returns each one's last step (insert_points' fast-path test).
_LOCK_SERIES = "SELECT id, last_step FROM tracking_series WHERE id = ANY(%s::int8[]) ORDER BY id FOR UPDATE"

_PG_FOLD = """
UPDATE tracking_series s SET
    min_value = LEAST(s.min_value, b.mn),
    max_value = GREATEST(s.max_value, b.mx),
    last_value = CASE WHEN s.last_step IS NULL OR b.ls >= s.last_step THEN b.lv ELSE s.last_value END,
    last_step = GREATEST(s.last_step, b.ls)
FROM unnest(%s::int8[], %s::float8[], %s::float8[], %s::int8[], %s::float8[]) AS b(sid, mn, mx, ls, lv)
WHERE s.id = b.sid
"""

_PG_SUMMARY = """
WITH b(sid, lo, hi) AS (SELECT * FROM unnest(%s::int8[], %s::int8[], %s::int8[])),
agg AS (
    SELECT b.sid, a.mn, a.mx, l.step AS ls, l.value AS lv
    FROM b
    CROSS JOIN LATERAL (SELECT min(p.value) AS mn, max(p.value) AS mx FROM tracking_point p
                        WHERE p.series_id = b.sid AND p.step BETWEEN b.lo AND b.hi) a
    CROSS JOIN LATERAL (SELECT p.step, p.value FROM tracking_point p
                        WHERE p.series_id = b.sid AND p.step BETWEEN b.lo AND b.hi ORDER BY p.step DESC LIMIT 1) l
)
UPDATE tracking_series s SET
    min_value = CASE WHEN %s THEN agg.mn ELSE LEAST(s.min_value, agg.mn) END,
    max_value = CASE WHEN %s THEN agg.mx ELSE GREATEST(s.max_value, agg.mx) END,
    last_value = CASE WHEN %s OR s.last_step IS NULL OR agg.ls >= s.last_step THEN agg.lv ELSE s.last_value END,
    last_step = CASE WHEN %s THEN agg.ls ELSE GREATEST(s.last_step, agg.ls) END
FROM agg WHERE s.id = agg.sid
"""


def refresh_summaries(*, lows: dict[int, int], highs: dict[int, int], reset: bool = False) -> None:
    """Fold the stored points of each series `sid` within [lows[sid], highs[sid]] into its summary.
    `reset`: the range covers the whole series; its summary is replaced (NULL when it has no point
    left)."""
    if not lows:
        return
    sids = sorted(lows)
    if reset:
        _clear_summaries(sids)
    with connection.cursor() as cur:
        if is_postgres():
            cur.execute(_LOCK_SERIES, [_pg_array(sids)])
            cur.execute(_PG_SUMMARY, [_pg_array(sids), _pg_array(lows[s] for s in sids),
                                      _pg_array(highs[s] for s in sids), reset, reset, reset, reset])
            return
        # SQLite (embedded): per series; its two-argument min()/max() are NULL when either is.
        for sid in sids:
            cur.execute("SELECT min(value), max(value) FROM tracking_point WHERE series_id = %s AND step BETWEEN %s AND %s",
                        [sid, lows[sid], highs[sid]])
            mn, mx = cur.fetchone()
            if mn is None:
                continue
            cur.execute("SELECT step, value FROM tracking_point WHERE series_id = %s AND step BETWEEN %s AND %s "
                        "ORDER BY step DESC LIMIT 1", [sid, lows[sid], highs[sid]])
            ls, lv = cur.fetchone()
            cur.execute("SELECT min_value, max_value, last_step, last_value FROM tracking_series WHERE id = %s", [sid])
            row = cur.fetchone()
            if row is None:
                continue
            omn, omx, ols, olv = row
            newer = ols is None or ls >= ols
            cur.execute("UPDATE tracking_series SET min_value = %s, max_value = %s, last_step = %s, last_value = %s "
                        "WHERE id = %s",
                        [mn if omn is None else min(omn, mn), mx if omx is None else max(omx, mx),
                         ls if newer else ols, lv if newer else olv, sid])


def _clear_summaries(sids: list[int]) -> None:
    marks = ",".join(["%s"] * len(sids))
    with connection.cursor() as cur:
        cur.execute(f"UPDATE tracking_series SET min_value = NULL, max_value = NULL, last_step = NULL, last_value = NULL "
                    f"WHERE id IN ({marks})", sids)


def recompute_summaries(sids: list[int]) -> None:
    """The summaries of these series from all their points (after a rewind deleted some)."""
    if sids:
        refresh_summaries(lows={s: 0 for s in sids}, highs={s: MAX_STEP for s in sids}, reset=True)


# --- reading ------------------------------------------------------------------------------------


def _ensure_rollups(sid: int) -> int:
    """Build the rollups of every complete bucket not built yet; returns the series' rollup_upto.

    The bucket holding the newest step stays open (raw) until a later step closes it.
    """
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT rollup_upto FROM tracking_series WHERE id = %s FOR UPDATE", [sid])
        row = cur.fetchone()
        if row is None:
            return -1
        old = row[0]
        cur.execute("SELECT max(step) FROM tracking_point WHERE series_id = %s", [sid])
        smax = cur.fetchone()[0]
        if smax is None:
            return old
        new = ((smax >> _BASE_BITS) << _BASE_BITS) - 1
        if new <= old:
            return old
        cur.execute(
            """
            INSERT INTO tracking_rollup (series_id, level, bucket, n, total, min_v, min_step, min_ts, max_v, max_step, max_ts)
            SELECT %(sid)s, 1, step >> 3, count(*), sum(value),
                   min(value), (array_agg(step ORDER BY value, step))[1], (array_agg(ts ORDER BY value, step))[1],
                   max(value), (array_agg(step ORDER BY value DESC, step))[1], (array_agg(ts ORDER BY value DESC, step))[1]
            FROM tracking_point WHERE series_id = %(sid)s AND step BETWEEN %(lo)s AND %(hi)s
            GROUP BY step >> 3
            ON CONFLICT DO NOTHING
            """,
            {"sid": sid, "lo": old + 1, "hi": new},
        )
        for level in range(2, ROLLUP_LEVELS + 1):
            shift = _BASE_BITS * level
            b_start = (old + 1) >> shift
            b_end = ((new + 1) >> shift) - 1
            if b_end < b_start:
                break  # no complete bucket at this level, nor at any coarser one
            cur.execute(
                """
                INSERT INTO tracking_rollup (series_id, level, bucket, n, total, min_v, min_step, min_ts, max_v, max_step, max_ts)
                SELECT %(sid)s, %(level)s, bucket >> 3, sum(n), sum(total),
                       min(min_v), (array_agg(min_step ORDER BY min_v, min_step))[1], (array_agg(min_ts ORDER BY min_v, min_step))[1],
                       max(max_v), (array_agg(max_step ORDER BY max_v DESC, max_step))[1], (array_agg(max_ts ORDER BY max_v DESC, max_step))[1]
                FROM tracking_rollup
                WHERE series_id = %(sid)s AND level = %(child)s AND bucket BETWEEN %(c0)s AND %(c1)s
                GROUP BY bucket >> 3
                ON CONFLICT DO NOTHING
                """,
                {"sid": sid, "level": level, "child": level - 1, "c0": b_start << 3, "c1": ((b_end + 1) << 3) - 1},
            )
        cur.execute("UPDATE tracking_series SET rollup_upto = %s WHERE id = %s", [new, sid])
        return new


def series_window(*, sid: int, min_step: int | None = None, max_step: int | None = None, max_points: int = 2000) -> dict:
    """At most `max_points` points of a series over [min_step, max_step]: every point when they fit,
    else the min and the max point of each bucket (M4-style), so spikes survive and nothing is
    silently dropped: `total` says how many points the range holds."""
    return series_windows(sids=[sid], min_step=min_step, max_step=max_step, max_points=max_points)[sid]


def _empty(lo, hi) -> dict:
    return {"x": [], "y": [], "t": [], "total": 0, "downsampled": False, "range": [lo, hi]}


def series_windows(*, sids: list[int], min_step: int | None = None, max_step: int | None = None,
                   max_points: int = 2000) -> dict[int, dict]:
    """`series_window` for several series in two round-trips (bounds, then every window's rows in
    one UNION ALL): a run page asks for ~20 series at once."""
    max_points = max(4, int(max_points))
    out: dict[int, dict] = {}
    if not sids:
        return out
    marks = ",".join(["%s"] * len(sids))
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT s.id, s.rollup_upto, (SELECT min(step) FROM tracking_point p WHERE p.series_id = s.id), "
            f"(SELECT max(step) FROM tracking_point p WHERE p.series_id = s.id) FROM tracking_series s WHERE s.id IN ({marks})",
            list(sids),
        )
        bounds = {row[0]: row[1:] for row in cur.fetchall()}
    parts, params, plans = [], [], {}
    for sid in sids:
        upto, smin, smax = bounds.get(sid, (-1, None, None))
        if smin is None:
            out[sid] = _empty(min_step, max_step)
            continue
        lo = smin if min_step is None else max(smin, int(min_step))
        hi = smax if max_step is None else min(smax, int(max_step))
        if hi < lo:
            out[sid] = _empty(lo, hi)
            continue
        span = hi - lo + 1
        raw_sql = ("SELECT %s, step, 1, value, step, ts, value, step, ts FROM tracking_point "
                   "WHERE series_id = %s AND step BETWEEN %s AND %s")
        if span <= max_points:  # steps are unique per series: the range cannot hold more
            plans[sid] = ("raw", lo, hi, 1)
            parts.append(raw_sql)
            params += [sid, sid, lo, hi]
            continue
        width = math.ceil(span / max(1, (max_points - 2) // 2))
        level = 0
        while level < ROLLUP_LEVELS and (1 << (_BASE_BITS * (level + 1))) <= width:
            level += 1
        if level == 0 or not is_postgres():
            plans[sid] = ("m4", lo, hi, width)
            parts.append(raw_sql)
            params += [sid, sid, lo, hi]
            continue
        if ((smax >> _BASE_BITS) << _BASE_BITS) - 1 > upto:  # complete buckets not rolled up yet
            upto = _ensure_rollups(sid)
        lw = 1 << (_BASE_BITS * level)
        width = math.ceil(width / lw) * lw  # final buckets are whole rollup buckets
        b_lo = -(-lo // lw)
        b_hi = min((hi + 1) // lw - 1, (upto + 1) // lw - 1)
        c_lo, c_hi = (hi + 1, hi) if b_hi < b_lo else (b_lo * lw, (b_hi + 1) * lw - 1)
        plans[sid] = ("m4", lo, hi, width)
        # Rollup rows of the covered buckets plus the raw points at the edges, merged into the
        # final buckets in Python: index range scans of a few thousand rows, no sort per bucket.
        parts.append("SELECT %s, bucket * %s, n, min_v, min_step, min_ts, max_v, max_step, max_ts FROM tracking_rollup "
                     "WHERE series_id = %s AND level = %s AND bucket BETWEEN %s AND %s")
        params += [sid, lw, sid, level, b_lo, b_hi]
        # The edges as two index ranges: `BETWEEN lo AND hi AND (step < c_lo OR step > c_hi)` read
        # every point of the range and filtered them, which cost more than the rollups saved.
        if c_lo > lo:
            parts.append(raw_sql)
            params += [sid, sid, lo, min(hi, c_lo - 1)]
        if c_hi < hi:
            parts.append(raw_sql)
            params += [sid, sid, max(lo, c_hi + 1), hi]
    if not parts:
        return out
    rows_by: dict[int, list] = {sid: [] for sid in plans}
    with connection.cursor() as cur:
        cur.execute(" UNION ALL ".join(parts), params)
        for row in cur.fetchall():
            rows_by[row[0]].append(row[1:])
    for sid, (kind, lo, hi, width) in plans.items():
        rows = rows_by[sid]
        rows.sort()
        if kind == "raw":
            out[sid] = {"x": [r[0] for r in rows], "y": [r[2] for r in rows], "t": [r[4] for r in rows],
                        "total": len(rows), "downsampled": False, "range": [lo, hi]}
        else:
            out[sid] = _merge(rows, width, lo, hi)
    return out


def _merge(rows, width: int, lo: int, hi: int) -> dict:
    """(start, n, min_v, min_step, min_ts, max_v, max_step, max_ts) rows in order → the min and
    the max point of each bucket of `width` steps, in step order."""
    x: list = []
    y: list = []
    t: list = []
    total = 0
    cur_b = None
    mn = mx = None

    def flush():
        pts = (mn, mx) if mn[0] <= mx[0] else (mx, mn)
        for p in pts if mn[0] != mx[0] else pts[:1]:
            x.append(p[0]); y.append(p[1]); t.append(p[2])  # noqa: E702

    for s0, n, v_min, s_min, t_min, v_max, s_max, t_max in rows:
        total += n
        b = s0 // width
        if b != cur_b:
            if cur_b is not None:
                flush()
            cur_b, mn, mx = b, (s_min, v_min, t_min), (s_max, v_max, t_max)
        else:
            if v_min < mn[1] or (v_min == mn[1] and s_min < mn[0]):
                mn = (s_min, v_min, t_min)
            if v_max > mx[1] or (v_max == mx[1] and s_max < mx[0]):
                mx = (s_max, v_max, t_max)
    if cur_b is not None:
        flush()
    return {"x": x, "y": y, "t": t, "total": total, "downsampled": total > len(x), "range": [lo, hi]}
