"""A stage resumed from a checkpoint with an edited config (a fork, pipelines.services.stage_fork)
trains with the edited optimizer settings: loading the checkpoint's optimizer state must not bring
its learning rate back. Both engines."""
import pytest

from tests.training_backend.test_trainer import digits, make_model, make_spec  # noqa: F401 (digits: the reward fixture)
from training_backend.config import parse_spec
from training_backend.grpo import train
from training_backend.report import MemoryReporter


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.mark.parametrize("engine", ["torch", "deepspeed"])
def test_resume_with_an_edited_learning_rate_trains_with_it(tmp_path, model_dir, engine):
    quiet = dict(progress=lambda _: None)
    first = MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "out", max_steps=2, engine=engine, zero_stage=2)), first, **quiet)
    assert set(first.series("learning_rate")) == {1e-3}
    resumed = MemoryReporter()
    train(parse_spec(make_spec(tmp_path, model_dir, "out", max_steps=4, engine=engine, zero_stage=2, learning_rate=0.05,
                               lr_scheduler="linear")), resumed, resume=True, **quiet)
    assert resumed.rewinds == [2] and sorted({s for s, _, _ in resumed.metrics}) == [3, 4]
    # after the 3rd optimizer step of a linear decay over 4: the edited rate and schedule (the
    # checkpoint's would give 1e-3 constant; its rate on the edited schedule 2.5e-4)
    assert resumed.series("learning_rate")[0] == pytest.approx(0.05 * (1 - 3 / 4), rel=1e-9)
