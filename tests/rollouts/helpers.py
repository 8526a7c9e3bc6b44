"""Rollouts for the tests, logged through the real ingest path (parse + tracked_run_log), so the
computed columns (correct, zero_std_group, reflection_count, language_mixed) are the real ones."""
from __future__ import annotations

import json
import statistics

from r1lab.tracking.ingest import parse_log_body
from r1lab.tracking.services import tracked_run_create, tracked_run_log

XSS = "<script>alert(1)</script>"


def completion(i: int, correct: bool, reflect: bool = False, long: bool = False) -> str:
    think = f"I add the numbers {i}." + (" Wait, let me recheck that." if reflect else "") + (" and so on" * 200 if long else "")
    return f"{think}</think> <answer>{i if correct else i + 1}</answer>"


def group_samples(step: int, group: int, rewards: list[float], *, prompt_id: str | None = None, prompt: str | None = None,
                  completions: list[str] | None = None, **extra) -> list[dict]:
    mean = statistics.fmean(rewards)
    std = statistics.pstdev(rewards) or 1.0
    out = []
    for i, r in enumerate(rewards):
        out.append({
            "step": step, "group": group, "index": i, "prompt_id": prompt_id or f"p{group}", "prompt": prompt or f"What is {group}+{group}?",
            "completion": completions[i] if completions else completion(i, r >= 1.0, reflect=(i == 0)),
            "rewards": {"accuracy": 1.0 if r >= 1.0 else 0.0, "format": r - (1.0 if r >= 1.0 else 0.0)},
            "reward": r, "advantage": (r - mean) / std, "length": 20 + 10 * i, "truncated": i == len(rewards) - 1, **extra,
        })
    return out


def log(run, samples: list[dict]) -> dict:
    return tracked_run_log(run_id=run.pk, parsed=parse_log_body(json.dumps({"samples": samples}).encode()))


def make_run(name: str = "grpo-run", steps=(0, 1), G: int = 4):
    """A run whose every step has: group 0 mixed rewards, group 1 all equal (zero variance)."""
    run, _token = tracked_run_create(name=name)
    for step in steps:
        log(run, group_samples(step, 0, [1.5, 0.5, 1.0, 0.0][:G]) + group_samples(step, 1, [0.5] * G))
    return run


def lineage_group(step: int, prompt_id: str, correct: int, G: int = 4, *, group_no: int = 0, vary_format: bool = False,
                  gold: str = "7", prompt: str | None = None) -> list[dict]:
    """One GRPO group for the prompt-lineage tests: `correct` of G completions right (accuracy 1),
    the rest wrong. Rewards are the accuracy alone (a group all right or all wrong is zero-variance),
    plus a format reward that varies inside the group when `vary_format`."""
    out = []
    for i in range(G):
        acc = 1.0 if i < correct else 0.0
        fmt = (0.5 if i % 2 else 0.0) if vary_format else 0.0
        out.append({"step": step, "group": group_no, "index": i, "prompt_id": prompt_id, "prompt": prompt or f"Problem {prompt_id}",
                    "completion": f"<think>try {i}</think> <answer>{i}</answer>", "rewards": {"accuracy": acc, "format": fmt},
                    "reward": acc + fmt, "gold": gold})
    return out


# Six prompts over steps 1-3 (G = 4), correct completions per step:
#   A 0 → 2 → 4 learned      B 4 → 4 → 1 forgotten     C 4 ×3 always (zero-variance)
#   D 0 ×3 never (zero-var)   E 2 ×3 mixed              F 4 ×3 with a varying format reward: always, not zero-var
HAND_BUILT = {"A": [0, 2, 4], "B": [4, 4, 1], "C": [4, 4, 4], "D": [0, 0, 0], "E": [2, 2, 2], "F": [4, 4, 4]}


def log_hand_built(run, prompts: dict[str, str] | None = None, send=None) -> None:
    """HAND_BUILT's groups, one batch per step, through `send(run, samples)` (default: the ingest
    service in this process; browser tests post them to the live server instead)."""
    for step in (1, 2, 3):
        batch = []
        for g, (pid, correct) in enumerate(HAND_BUILT.items()):
            batch += lineage_group(step, pid, correct[step - 1], group_no=g, vary_format=pid == "F",
                                   prompt=(prompts or {}).get(pid))
        (send or log)(run, batch)
