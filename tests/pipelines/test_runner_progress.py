"""The worker follows the trainer's log: several progress lines between two polls must not lose
the first step of the attempt (a resumed attempt's first step is its checkpoint + 1)."""
from r1lab.pipelines.runner import _Progress


def test_first_step_is_the_first_line_not_the_latest(tmp_path):
    log = tmp_path / "trainer.log"
    log.write_text(
        "$ python -m training_backend run SPEC.json --resume\n"
        'R1LAB_PROGRESS {"step": 5, "total": 40, "eta_s": 70}\n'
        'R1LAB_PROGRESS {"step": 6, "total": 40, "eta_s": 68}\n'
        'R1LAB_PROGRESS {"step": 7, "tot'  # a line still being written
    )
    progress = _Progress(log)
    progress.poll()
    assert (progress.first_step, progress.step, progress.total) == (5, 6, 40)
    with log.open("a") as fh:
        fh.write('al": 40, "eta_s": 66}\n')
    progress.poll()
    assert (progress.first_step, progress.step) == (5, 7)
