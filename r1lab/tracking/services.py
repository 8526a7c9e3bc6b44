"""Writes of the tracking app: runs and their tokens, metric/sample ingestion, finish, comments.

Each service owns its transaction and sends its live push after commit (`transaction.on_commit`),
so a browser never draws a point that a rollback took back.
"""
from __future__ import annotations

import hashlib
import secrets
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from r1lab import live
from r1lab.accounts.models import hash_token
from r1lab.tracking import prompt_stats, store
from r1lab.tracking.ingest import ParsedLog
from r1lab.tracking.models import Comment, LostSample, Rewind, Run, Sample

RUN_TOKEN_PREFIX = "r1r_"
# Batches with more points than this are not pushed point by point: pages are told to back-fill.
LIVE_MAX_POINTS = 5000
# last_seen_at is written at most this often per run (it is a heartbeat, not a log).
HEARTBEAT_WRITE_EVERY_S = 1.0
_last_heartbeat: dict[int, float] = {}


def run_group_name(run_id: int) -> str:
    return f"tracking.run.{run_id}"


def _push(run_id: int, event) -> None:
    live.group_send(run_group_name(run_id), event)


def tracked_run_create(*, name: str, project: str = "default", config: dict | None = None, user=None,
                       external: bool = False, attempt: int = 1, forked_from_id: int | None = None,
                       forked_at_step: int | None = None) -> tuple[Run, str]:
    """Create a tracked run; returns (run, raw ingest token). Only the hash is stored. A fork names
    the run it continues and the step it continues after (its own curve starts at the next one)."""
    raw = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    run = Run.objects.create(name=name[:200], project=(project or "default")[:100], config=config or {},
                             created_by=user, external=external, token_hash=hash_token(raw),
                             first_attempt=attempt, attempt=attempt, forked_from_id=forked_from_id,
                             forked_at_step=forked_at_step if forked_from_id else None)
    return run, raw


def tracked_run_rotate_token(*, run: Run, attempt: int | None = None) -> str:
    """A fresh ingest token for a new attempt of the run's stage; the old one stops working.
    `attempt`: the stage's attempt number, which labels what this attempt logs."""
    raw = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    fields = {"token_hash": hash_token(raw)}
    if attempt is not None:
        fields["attempt"] = attempt
    Run.objects.filter(pk=run.pk).update(**fields)
    for k, v in fields.items():
        setattr(run, k, v)
    return raw


def run_segments(*, run: Run) -> list[tuple[int, int]]:
    """The attempts that make the run's curve now: [(attempt, first step)], in step order."""
    segments = [(run.first_attempt, 0)]
    for after_step, attempt in run.rewinds.order_by("id").values_list("after_step", "attempt"):
        segments = [seg for seg in segments if seg[1] <= after_step] + [(attempt, after_step + 1)]
    return segments


def _attempt_case(segments: list[tuple[int, int]]) -> tuple[str, list]:
    """SQL for the attempt that logged `step`, from the run's segments."""
    sql, params = "CASE", []
    for attempt, first in reversed(segments):
        sql += " WHEN step >= %s THEN %s"
        params += [first, attempt]
    return sql + " END", params


def tracked_run_rewind(*, run: Run, after_step: int) -> Rewind | None:
    """A resumed attempt continues after `after_step` (-1: from the start). Points, rollups and
    samples logged after it by earlier attempts leave the curve for LostPoint / LostSample, so
    that the new attempt's values, which ingest would otherwise drop as retries of stored steps,
    make the curve. None when the run holds nothing yet (a first attempt's rewind)."""
    from django.db import connection

    if after_step < -1:
        raise ValueError("after_step must be -1 or more")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        sids = list(run.series.values_list("id", flat=True))
        has_samples = Sample.objects.filter(run=run).exists()
        if not sids and not has_samples and not run.rewinds.exists():
            return None
        segments = run_segments(run=run)
        # A pipeline worker sets the attempt with the attempt's token; an API client does not:
        # then each rewind starts the next attempt.
        attempt = run.attempt if run.attempt != segments[-1][0] else max(a for a, _ in segments) + 1
        rewind = Rewind.objects.create(run=run, after_step=after_step, attempt=attempt)
        case, case_params = _attempt_case(segments)
        lo = after_step + 1
        with connection.cursor() as cur:
            if sids:
                marks = ",".join(["%s"] * len(sids))
                cur.execute(
                    f"INSERT INTO tracking_lostpoint (rewind_id, series_id, step, value, ts, attempt) "
                    f"SELECT %s, series_id, step, value, ts, {case} FROM tracking_point "
                    f"WHERE series_id IN ({marks}) AND step > %s",
                    [rewind.pk, *case_params, *sids, after_step])
                rewind.lost_points = max(cur.rowcount, 0)
                cur.execute(f"DELETE FROM tracking_point WHERE series_id IN ({marks}) AND step > %s", [*sids, after_step])
                # Rollups over the lost steps go too (rebuilt lazily from the new points).
                cur.execute(f"UPDATE tracking_series SET rollup_upto = %s WHERE id IN ({marks}) AND rollup_upto >= %s",
                            [((lo >> 3) << 3) - 1, *sids, lo])
                cur.execute(f"DELETE FROM tracking_rollup WHERE series_id IN ({marks}) AND bucket >= (%s >> (3 * level))",
                            [*sids, lo])
            store.recompute_summaries(sids)  # last/min/max of what stays the curve
        lost = Sample.objects.filter(run=run, step__gt=after_step)
        attempt_of = lambda step: next(a for a, first in reversed(segments) if step >= first)  # noqa: E731
        moved = 0
        for chunk in _chunks(lost.values().iterator(chunk_size=1000), 1000):
            LostSample.objects.bulk_create([
                LostSample(rewind=rewind, run=run, step=row["step"], group=row["group"], index=row["index"],
                           attempt=attempt_of(row["step"]),
                           data={k: (v.isoformat() if k == "created_at" else v) for k, v in row.items()
                                 if k not in ("id", "run_id", "dedupe")})
                for row in chunk])
            moved += len(chunk)
        lost.delete()
        prompt_stats.prompt_stats_rewind(run_id=run.pk, after_step=after_step)
        rewind.lost_samples = moved
        rewind.save(update_fields=["lost_points", "lost_samples"])
        run.attempt = attempt
        run.save(update_fields=["attempt"])
        payload = {"after_step": after_step, "attempt": attempt}
        transaction.on_commit(lambda: _rewound(run.pk, payload))
    return rewind


def _chunks(rows, n: int):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rewound(run_id: int, payload: dict) -> None:
    from django.core.cache import cache

    cache.delete(f"tracking:signals:{run_id}")  # the aha moment and alarms of the old curve
    _push(run_id, {"type": "run.rewound", **payload})


@transaction.atomic
def tracked_run_set_status(*, run: Run, status: str) -> Run:
    """Set the run's status (`crashed` when its stage is known dead) and tell open pages."""
    if status not in Run.Status.values:
        raise ValueError(f"unknown run status {status!r}")
    run.status = status
    run.finished_at = None if status == Run.Status.RUNNING else timezone.now()
    run.save(update_fields=["status", "finished_at"])
    payload = run.status_payload()
    transaction.on_commit(lambda: _push(run.pk, {"type": "run.status", "run": payload}))
    return run


def tracked_run_finish(*, run: Run, status: str) -> Run:
    """The trainer's own final word (`POST …/finish`)."""
    if status not in (Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED):
        raise ValueError(f"status must be succeeded, failed or cancelled (got {status!r})")
    Run.objects.filter(pk=run.pk).update(last_seen_at=timezone.now())
    return tracked_run_set_status(run=run, status=status)


@transaction.atomic
def tracked_run_config_update(*, run: Run, config: dict) -> Run:
    """Set keys of the run's config (the trainer's hyperparameters, sent after the run was
    created: W&B-style `config.update`). Top-level keys are replaced, the others kept."""
    locked = Run.objects.select_for_update().only("id", "config").get(pk=run.pk)
    locked.config = {**(locked.config or {}), **config}
    locked.save(update_fields=["config"])
    run.config = locked.config
    return run


def tracked_run_notes_update(*, run: Run, notes: str) -> Run:
    run.notes = notes[:20000]
    run.save(update_fields=["notes"])
    return run


def tracked_run_delete(*, run: Run) -> None:
    """Delete a run with its points and rollups (which carry no FK constraint, for ingest speed)."""
    from django.db import connection

    with transaction.atomic():
        ids = list(run.series.values_list("id", flat=True))
        if ids:
            with connection.cursor() as cur:
                for table in ("tracking_point", "tracking_rollup", "tracking_lostpoint"):
                    marks = ",".join(["%s"] * len(ids))
                    cur.execute(f"DELETE FROM {table} WHERE series_id IN ({marks})", ids)
        run.delete()
    store.forget_run(run.pk)


# --- ingestion ------------------------------------------------------------------------------------


def tracked_run_log(*, run_id: int, parsed: ParsedLog) -> dict:
    """Store a validated batch (idempotent: points already stored for (run, key, step) and samples
    already stored are skipped) and push the new points to open run pages after commit.

    Returns {"accepted": {...}, "stored": {...}}: accepted is what the batch held, stored what was new.
    """
    n_points = len(parsed.steps)
    stored_points = stored_samples = 0
    with transaction.atomic():
        if n_points:
            unique_keys = list(dict.fromkeys(parsed.keys))
            ids = store.series_ids(run_id=run_id, keys=unique_keys, max_keys=settings.R1LAB_MAX_KEYS_PER_RUN)
            sids = [ids[k] for k in parsed.keys]
            stored_points = store.insert_points(sids=sids, steps=parsed.steps, values=parsed.values, tss=parsed.tss)
        if parsed.samples:
            stored_samples = _samples_insert(run_id=run_id, samples=parsed.samples)
        now_mono = time.monotonic()
        if now_mono - _last_heartbeat.get(run_id, 0.0) >= HEARTBEAT_WRITE_EVERY_S:
            _last_heartbeat[run_id] = now_mono
            Run.objects.filter(pk=run_id).update(last_seen_at=timezone.now())
        if n_points or parsed.samples:
            # built where it is sent: off the request's path in the web server (r1lab/live.py)
            transaction.on_commit(lambda: _push(run_id, lambda: _live_event(parsed)))
    return {"accepted": {"metrics": n_points, "samples": len(parsed.samples)},
            "stored": {"metrics": stored_points, "samples": stored_samples}}


def _live_event(parsed: ParsedLog) -> dict:
    event: dict = {"type": "metrics.points", "ts": time.time()}
    if len(parsed.steps) > LIVE_MAX_POINTS:
        event["points"] = {}
        event["backfill"] = True  # too many to push: pages re-read what they show
    else:
        points: dict[str, list] = {}
        for key, step, value, ts in zip(parsed.keys, parsed.steps, parsed.values, parsed.tss):
            points.setdefault(key, []).append([step, value, ts])
        event["points"] = points
    if parsed.samples:
        event["sample_steps"] = sorted({s["step"] for s in parsed.samples})
    return event


def _dedupe(s: dict, occurrence: int) -> int:
    """A sample's identity within (run, step): (group, index) when the trainer sends them, else
    its content (+ how many identical ones came before it in the batch). 63-bit, signed."""
    if s["group"] is not None and s["index"] is not None:
        raw = f"gi\x00{s['group']}\x00{s['index']}"
    else:
        raw = f"c\x00{s['group']}\x00{s['prompt']}\x00{s['completion']}\x00{occurrence}"
    return int.from_bytes(hashlib.blake2b(raw.encode(), digest_size=8).digest(), "big", signed=True)


_ACCURACY_NAMES = ("accuracy", "accuracy_reward", "correct")
_LANGUAGE_NAMES = ("language", "language_consistency", "language_consistency_reward")


def _first(d: dict, names) -> float | None:
    for n in names:
        v = d.get(n)
        if v is not None:
            return v
    return None


def _samples_insert(*, run_id: int, samples: list[dict]) -> int:
    # Imported here: the rewards package pulls math-verify, which only sample ingestion needs.
    from training_backend.reflection import count_reflections
    from training_backend.rewards.parsing import extract_answer, extract_think

    seen: dict[tuple, int] = {}
    rows = []
    for s in samples:
        ident = (s["step"], s["group"], s["prompt"], s["completion"])
        occ = seen.get(ident, 0)
        seen[ident] = occ + 1
        rewards = s["rewards"]
        total = s["reward"] if s["reward"] is not None else sum(v for v in rewards.values() if v is not None)
        acc = _first(rewards, _ACCURACY_NAMES)
        lang = s["language_consistency"] if s["language_consistency"] is not None else _first(rewards, _LANGUAGE_NAMES)
        mixed = s["language_mixed"] if s["language_mixed"] is not None else (None if lang is None else lang < 1.0)
        completion = s["completion"]
        rows.append(Sample(
            run_id=run_id, step=s["step"], group=s["group"] or 0, index=s["index"] or 0,
            dedupe=_dedupe(s, occ), prompt_id=s["prompt_id"], prompt=s["prompt"], completion=completion,
            think=s["think"] if s["think"] is not None else (extract_think(completion) or ""),
            answer=s["answer"] if s["answer"] is not None else (extract_answer(completion) or ""),
            rewards=rewards, reward=total, advantage=s["advantage"],
            length=s["length"] if s["length"] is not None else len(completion),
            truncated=bool(s["truncated"]), correct=None if acc is None else acc >= 1.0,
            reflection_count=count_reflections(completion), language_consistency=lang, language_mixed=mixed,
            extra=s["extra"],
        ))
    steps = {r.step for r in rows}
    existing = set(Sample.objects.filter(run_id=run_id, step__in=steps, dedupe__in=[r.dedupe for r in rows])
                   .values_list("step", "dedupe"))
    new = [r for r in rows if (r.step, r.dedupe) not in existing]
    # Within a batch, index defaults to the arrival order inside its (step, group).
    Sample.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
    _mark_zero_std_groups(run_id=run_id, groups={(r.step, r.group) for r in new})
    prompt_stats.prompt_stats_update(run_id=run_id, pairs={(r.prompt_id, r.step) for r in new},
                                     texts={r.prompt_id: (r.prompt, prompt_stats.gold_of(r.extra)) for r in new})
    return len(new)


def _mark_zero_std_groups(*, run_id: int, groups: set[tuple[int, int]]) -> None:
    """zero_std_group for each touched (step, group): all rewards equal → no learning signal."""
    if not groups:
        return
    cond = Q()
    for step, group in groups:
        cond |= Q(step=step, group=group)
    rewards: dict[tuple[int, int], list[float]] = {}
    for step, group, reward in Sample.objects.filter(cond, run_id=run_id).values_list("step", "group", "reward"):
        rewards.setdefault((step, group), []).append(reward)
    by_value: dict[bool | None, Q] = {}
    for (step, group), rs in rewards.items():
        z = None if len(rs) < 2 else (max(rs) - min(rs)) <= 1e-9
        by_value[z] = by_value.get(z, Q()) | Q(step=step, group=group)
    for z, q in by_value.items():
        Sample.objects.filter(q, run_id=run_id).update(zero_std_group=z)


# --- comments ---------------------------------------------------------------------------------------


@transaction.atomic
def comment_create(*, run: Run, step: int, body: str, user) -> Comment:
    body = body.strip()
    if not body:
        raise ValueError("a comment needs some text")
    if step < 0:
        raise ValueError("step must be non-negative")
    comment = Comment.objects.create(run=run, step=step, body=body[:4000], author=user)
    payload = {"id": comment.pk, "step": comment.step, "body": comment.body, "author": user.username,
               "created_at": comment.created_at.isoformat()}
    transaction.on_commit(lambda: _push(run.pk, {"type": "comment.added", "comment": payload}))
    return comment
