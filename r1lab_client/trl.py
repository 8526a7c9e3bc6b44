"""A `TrainerCallback` for TRL's GRPOTrainer (or any transformers Trainer): add one callback and
the run reports to r1lab: metrics on every log, the latest rollouts (prompt, completion, reward
per function, advantage, grouped by prompt), and the final status.

    from r1lab_client.trl import R1labCallback
    trainer = GRPOTrainer(..., callbacks=[R1labCallback(base_url="http://r1lab:8000", token=PERSONAL_TOKEN,
                                                        project="r1-zero")])
    trainer.add_callback(...)  # or pass `trainer=` to the callback to also send rollouts:
    cb = R1labCallback(base_url=..., token=...); trainer = GRPOTrainer(..., callbacks=[cb]); cb.trainer = trainer

TRL's metric names (reward, reward_std, rewards/<fn>/mean, completions/mean_length, kl, entropy,
clip_ratio/…, frac_reward_zero_std, learning_rate) are the dashboard's panel names, so every chart
fills in. Only the main process (rank 0) reports. transformers is imported here, not by the rest
of r1lab_client.
"""
from __future__ import annotations

import math

from transformers import TrainerCallback

from r1lab_client.client import Run, init


class R1labCallback(TrainerCallback):
    def __init__(self, run: Run | None = None, *, base_url: str | None = None, token: str | None = None,
                 name: str | None = None, project: str = "trl", config: dict | None = None, trainer=None,
                 send_rollouts: bool = True, **run_kw):
        if run is None and not (base_url and token):
            raise ValueError("give either run= (an r1lab_client.Run) or base_url= and token= (a personal API token)")
        self.run = run
        self._init_kw = {"base_url": base_url, "token": token, "name": name, "project": project, "config": config or {}, **run_kw}
        self.trainer = trainer
        self.send_rollouts = send_rollouts
        self._sent_rollout_steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.run is None and state.is_world_process_zero:
            kw = dict(self._init_kw)
            config = {**_plain(args.to_sanitized_dict()), **kw.pop("config")}
            name = kw.pop("name") or getattr(args, "run_name", None) or "trl-run"
            self.run = init(kw.pop("base_url"), kw.pop("token"), name=name, project=kw.pop("project"), config=config, **kw)
        elif self.run is not None and state.is_world_process_zero and state.global_step > 0:
            # resume_from_checkpoint into an existing run: the steps after the checkpoint are redone
            self.run.rewind(int(state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not state.is_world_process_zero:
            return
        step = int(state.global_step)
        metrics = {k: float(v) for k, v in (logs or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if metrics:
            self.run.log(metrics, step=step)
        if self.send_rollouts and step not in self._sent_rollout_steps:
            samples = self.rollouts(args)
            if samples:
                self.run.log_samples(samples, step=step)
                self._sent_rollout_steps.add(step)
        self.run.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is not None and state.is_world_process_zero:
            self.run.finish("succeeded")

    def rollouts(self, args) -> list[dict]:
        """The latest generation batch from GRPOTrainer's `_logs` (prompt, completion, rewards by
        function, advantages), grouped by prompt: TRL keeps the G completions of a prompt together."""
        logs = getattr(self.trainer, "_logs", None)
        if not isinstance(logs, dict):
            return []
        prompts, completions = list(logs.get("prompt", ())), list(logs.get("completion", ()))
        rewards = {name: list(values) for name, values in (logs.get("rewards") or {}).items()}
        advantages = list(logs.get("advantages", ()))
        g = max(1, int(getattr(args, "num_generations", 0) or 1))
        out = []
        for i in range(min(len(prompts), len(completions))):
            r = {name: float(v[i]) for name, v in rewards.items() if i < len(v) and v[i] is not None and math.isfinite(float(v[i]))}
            sample = {"prompt": _text(prompts[i]), "completion": _text(completions[i]), "rewards": r, "group": i // g, "index": i % g}
            if i < len(advantages) and math.isfinite(float(advantages[i])):
                sample["advantage"] = float(advantages[i])
            out.append(sample)
        return out


def _text(x) -> str:
    """TRL conversational prompts/completions are lists of {"role", "content"}: keep the text."""
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in x)
    return str(x)


def _plain(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}
