"""r1lab_client: report a training run's metrics and rollouts to an r1lab dashboard.

Standard library only (no torch, no Django, no requests), so any training script can use it:

    import r1lab_client
    run = r1lab_client.init("http://r1lab:8000", token="<personal API token>", name="grpo-7b",
                            project="r1-zero", config={"lr": 1e-6})
    for step in ...:
        run.log({"reward": 0.4, "completions/mean_length": 212.0}, step=step)
        run.log_samples([{"prompt": p, "completion": c, "rewards": {"accuracy": 1.0}}], step=step)
    run.finish("succeeded")

The wire format is docs/api.md, "Reporter payload". Batching: points and samples are encoded as
they are logged and sent in batches of at most `max_items` (10,000) items or `max_bytes` (4 MiB)
of JSON. A step's batch goes out when the next step starts, without waiting for the server's
answer, if one of `max_in_flight` (2) keep-alive connections is free; while both are waiting on
the server, the steps that end pile into the next batch (a trainer logging a step a second sends
every step at its end; a fast logger sends few large batches: 148k points/s with these defaults
in benchmarks/ingest.py). What waits `linger_s` (1 s) without a send goes out anyway, and `flush()`
sends everything and waits for every answer.

Delivery: a 5xx answer or a connection error is retried with exponential backoff, then the batch
is spooled to `<spool_dir>/spool.jsonl` and replayed, in order and before anything newer, on the
next flush. The server is idempotent per (run, key, step), so a replayed batch that had in fact
arrived does no harm (and a batch sent while an earlier one failed may be stored before it). A
4xx answer means the batch itself is bad: it is not retried; it is appended to
`<spool_dir>/rejected.jsonl` with the server's message and a warning goes to stderr, and the run
carries on. A run is never stuck behind one batch: a spooled batch that the server keeps failing
on (500) while it accepts the batches after it, or that failed `max_error_tries` times, is set
aside into the rejected file too; only a server that does not answer (or answers
502/503/504/429) holds the spool back.

`run.rewind(step)` when a run resumes from a checkpoint: what was logged after `step` becomes
history (shown faintly on the run page) and the resumed attempt's values make the curve.
`run.update_config({...})` sets keys of the run's config after it was created.

Other trainers, without changing their code (docs/integrations.md): `r1lab_client.trl`
(a TRL/transformers callback), `r1lab_client.wandb` (a W&B-style API), `python -m r1lab_client
sync-tensorboard LOGDIR` and `python -m r1lab_client sync-rollouts {verl,trl,generic} PATH`.
"""

from r1lab_client.client import ApiError, Run, init

__all__ = ["ApiError", "Run", "init"]
