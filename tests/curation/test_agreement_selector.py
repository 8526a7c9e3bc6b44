"""Agreement over a project's labels: κ for two annotators, α for three, widest disagreement first;
over step labels and over edits (issue 18)."""
import pytest
from django.urls import reverse

from r1lab.curation.models import StepLabel
from r1lab.curation.selectors.agreement import edit_agreement, project_agreement, step_agreement
from r1lab.curation.services.examples import example_save, label_save
from r1lab.curation.services.projects import project_set_annotators, project_update
from r1lab.curation.steps import entries_from, split_steps
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


# --- step labels and edits (issue 18) --------------------------------------------------------------------
def _steps(ex, user, labels, reasoning=None):
    """`user`'s verdicts on `ex`'s steps (of `reasoning`, else its current text), as the editor stores them."""
    split = split_steps(reasoning if reasoning is not None else ex.reasoning, ex.project.step_split)
    StepLabel.objects.create(example=ex, annotator=user, rule=split.used, version=ex.version,
                             entries=entries_from(split, dict(enumerate(labels)), {}))


def test_step_agreement_per_step_and_first_wrong_step(project, lead):
    a, b = UserFactory(username="ann-a", role="annotator"), UserFactory(username="ann-b", role="annotator")
    ex1 = make_example(project, lead, reasoning="S1.\n\nS2.\n\nS3.")
    ex2 = make_example(project, lead, reasoning="T1.\n\nT2.")
    ex3 = make_example(project, lead, reasoning="U1.\n\nU2.")
    _steps(ex1, a, ["correct", "incorrect", "correct"])
    _steps(ex1, b, ["correct", "correct", "correct"])
    _steps(ex2, a, ["correct", "incorrect"])
    _steps(ex2, b, ["correct", "incorrect"])
    # ex3: b labelled an older text (other steps): their first wrong steps are not compared, nor their steps.
    _steps(ex3, a, ["correct", "correct"])
    _steps(ex3, b, ["incorrect", "correct"], reasoning="V1.\n\nV2.")
    result = step_agreement(project=project)
    # Five steps with two verdicts: (c,c) (i,c) (c,c) (c,c) (i,i).
    # Same verdict: 4 of 5 pairs. κ: p_o = 4/5; marginals a: c 3, i 2; b: c 4, i 1; p_e = (3·4 + 2·1)/25 = 14/25;
    # κ = (0.8 − 0.56)/0.44 = 6/11. α (nominal): o_cc = 6, o_ci = o_ic = 1, o_ii = 2; n_c = 7, n_i = 3, n = 10;
    # D_o = 2/10; D_e = 2·7·3/(10·9) = 42/90; α = 1 − 0.2/0.4667 = 4/7.
    assert (result["examples"], result["compared"], result["annotators"], result["steps"]) == (3, 3, 2, 5)
    assert result["percent"] == pytest.approx(0.8)
    assert result["kappa"] == pytest.approx(6 / 11)
    assert result["alpha"] == pytest.approx(4 / 7)
    # First wrong step: ex1 a: step 2, b: none (differ); ex2 both step 2 (same); ex3 not comparable.
    assert result["first_wrong"] == {"same": 1, "pairs": 2, "rate": 0.5, "not_comparable": 1}
    assert result["pairs"] == [{"a": "ann-a", "b": "ann-b", "same": 1, "pairs": 2, "rate": 0.5}]
    assert [(d["example"], d["first_wrong"]) for d in result["disagreements"]] == [(ex1, {"ann-a": 2, "ann-b": "none"})]


def test_edit_agreement_between_annotators_and_from_the_original(project, lead):
    a, b = UserFactory(username="ed-a", role="annotator"), UserFactory(username="ed-b", role="annotator")
    project_update(project=project, description="", target_language="en", overlap=2, label_schema=project.label_schema)
    project_set_annotators(project=project, users=[a, b])
    ex = make_example(project, lead, reasoning="We add 2 and 2 to get 5 .", summary="5")
    make_example(project, lead)  # edited by nobody: not compared
    ex = example_save(example=ex, user=a, based_on=1, changes={"reasoning": "We add 2 and 2 to get 4 .", "summary": "4"})
    ex = example_save(example=ex, user=b, based_on=2, changes={"reasoning": "We add two and two to get 4 ."})
    example_save(example=ex, user=UserFactory(role="reviewer"), based_on=3, changes={"summary": "four"})  # not an annotator of it
    result = edit_agreement(project=project)
    # Traces (reasoning + summary), 10 words each: original "We add 2 and 2 to get 5 . 5",
    # a "… 2 and 2 … 4 . 4" (2 substitutions), b "… two and two … 4 . 4" (4 from the original, 2 from a).
    assert (result["examples"], result["shown"]) == (1, 1)
    row = result["rows"][0]
    assert row["example_id"] == ex.pk
    assert {u: d.value for u, d in row["from_original"].items()} == {"ed-a": pytest.approx(0.2), "ed-b": pytest.approx(0.4)}
    assert [(p["a"], p["b"], p["distance"].distance, p["distance"].length) for p in row["pairs"]] == [("ed-a", "ed-b", 2, 10)]
    assert result["pairs"] == [{"a": "ed-a", "b": "ed-b", "n": 1, "between": pytest.approx(0.2),
                                "a_from_original": pytest.approx(0.2), "b_from_original": pytest.approx(0.4)}]


def test_agreement_and_side_by_side_pages_escape_annotator_text(client, project, lead):
    a, b = UserFactory(username="pg-a", role="annotator"), UserFactory(username="pg-b", role="annotator")
    project_update(project=project, description="", target_language="en", overlap=2, label_schema=project.label_schema)
    project_set_annotators(project=project, users=[a, b])
    ex = make_example(project, lead, prompt="<script>p()</script>?", reasoning="one two three")
    ex = example_save(example=ex, user=a, based_on=1, changes={"reasoning": "one <b>two</b> three"})
    example_save(example=ex, user=b, based_on=2, changes={"reasoning": "one 2 three <img src=x onerror=alert(1)>"})
    client.force_login(UserFactory(role="viewer"))
    html = client.get(reverse("curation:agreement", kwargs={"slug": project.slug})).content.decode()
    assert 'id="edit-pairs"' in html and "&lt;script&gt;" in html and "<script>p()" not in html
    page = client.get(reverse("curation:edits", kwargs={"pk": ex.pk}))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-annotator="pg-a"' in html and 'data-annotator="pg-b"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert "pg-a ↔ pg-b" in html
