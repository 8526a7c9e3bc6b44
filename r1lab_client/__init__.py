"""r1lab_client: report a training run's metrics and rollouts to an r1lab dashboard.

Standard library only (no torch, no Django, no requests), so any training script can use it:

    import r1lab_client
    run = r1lab_client.init("http://r1lab:8000", token="<personal API token>", name="grpo-7b",
                            project="r1-zero", config={"lr": 1e-6})
    for step in ...:
        run.log({"reward": 0.4, "completions/mean_length": 212.0}, step=step)
        run.log_samples([{"prompt": p, "completion": c, "rewards": {"accuracy": 1.0}}], step=step)
    run.finish("succeeded")

The wire format is docs/api.md, "Reporter payload". Delivery: items are batched (a batch is sent
when a new step starts, at `max_items`, or on `flush()`); a 5xx answer or a connection error is
retried with exponential backoff, then the batch is spooled to `<spool_dir>/spool.jsonl` and
replayed, in order and before anything newer, on the next flush. The server is idempotent per
(run, key, step), so a replayed batch that had in fact arrived does no harm. A 4xx answer means the
batch itself is bad: it is not retried; it is appended to `<spool_dir>/rejected.jsonl` with the
server's message and a warning goes to stderr, and the run carries on. A run is never stuck behind
one batch: a spooled batch that the server keeps failing on (500) while it accepts the batches
after it, or that failed `max_error_tries` times, is set aside into the rejected file too; only a
server that does not answer (or answers 502/503/504/429) holds the spool back.

`run.rewind(step)` when a run resumes from a checkpoint: what was logged after `step` becomes
history (shown faintly on the run page) and the resumed attempt's values make the curve.
"""

from r1lab_client.client import ApiError, Run, init

__all__ = ["ApiError", "Run", "init"]
