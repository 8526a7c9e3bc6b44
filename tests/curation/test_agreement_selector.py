"""Agreement over a project's labels: κ for two annotators, α for three, widest disagreement first."""
import pytest

from r1lab.curation.selectors.projects import project_agreement
from r1lab.curation.services.examples import label_save
from tests.curation.conftest import make_example
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _label(ex, user, **values):
    label_save(example=ex, user=user, values={k: str(v) for k, v in values.items()})


def test_two_annotators_get_cohen_kappa(project, lead):
    a, b = UserFactory(role="annotator"), UserFactory(role="annotator")
    exs = [make_example(project, lead) for _ in range(4)]
    # correct: a = y y n n, b = y n n n  → p_o = 3/4; p_e = (2/4·1/4) + (2/4·3/4) = 1/2; κ = (0.75 − 0.5)/0.5 = 0.5
    for ex, va, vb in zip(exs, ["yes", "yes", "no", "no"], ["yes", "no", "no", "no"]):
        _label(ex, a, correct=va, quality=3)
        _label(ex, b, correct=vb, quality=3)
    _label(exs[3], a, correct="no", quality=1)
    _label(exs[3], b, correct="no", quality=5)  # widest spread on quality
    result = project_agreement(project=project)
    by_key = {row["key"]: row for row in result["labels"]}
    assert by_key["correct"]["method"] == "Cohen's κ"
    assert by_key["correct"]["value"] == pytest.approx(0.5)
    assert by_key["correct"]["units"] == 4
    assert result["worst"][0]["example"] == exs[3]


def test_three_annotators_get_krippendorff_alpha(project, lead):
    coders = [UserFactory(role="annotator") for _ in range(3)]
    ex1, ex2 = make_example(project, lead), make_example(project, lead)
    # nominal, two units: (y, y, y) and (y, y, n).
    # Coincidences: unit 1 gives o_yy = 3·2/2 = 3; unit 2 gives o_yy = 1, o_yn = o_ny = 1.
    # n_y = 5, n_n = 1, n = 6; D_o = 2/6; D_e = 2·5·1/(6·5) = 1/3; α = 1 − 1 = 0.
    for c, v1, v2 in zip(coders, ["yes"] * 3, ["yes", "yes", "no"]):
        _label(ex1, c, correct=v1)
        _label(ex2, c, correct=v2)
    row = next(r for r in project_agreement(project=project)["labels"] if r["key"] == "correct")
    assert row["method"].startswith("Krippendorff's α")
    assert row["value"] == pytest.approx(0.0)
