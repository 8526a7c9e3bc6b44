"""r1lab's trainers: plain Python with a CLI (`python -m training_backend run SPEC.json`).

Importing the package is light (stdlib only): the web process imports `training_backend.config`
to validate launch forms and must not pull torch. The heavy modules (grpo, tiny, rollout,
distributed) import torch themselves.
"""
