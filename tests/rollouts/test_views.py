"""The rollout browser's pages and send-to-curation, over rollouts ingested for real."""
import pytest
from django.urls import reverse

from r1lab.curation.models import CurationProject, Example
from r1lab.rollouts import selectors
from r1lab.tracking.models import Sample
from tests.rollouts.helpers import XSS, group_samples, log, make_run

pytestmark = pytest.mark.django_db


def step_url(run, step, query=""):
    return reverse("rollouts:step", args=[run.pk, step]) + query


def test_step_page_shows_each_group_with_every_completion_reward_component_and_advantage(client_as):
    run = make_run()
    client = client_as("viewer")
    r = client.get(step_url(run, 0))
    assert r.status_code == 200
    groups = r.context["groups"]
    assert [g.group for g in groups] == [0, 1]
    assert [len(g.completions) for g in groups] == [4, 4]
    assert groups[1].zero_std is True and groups[0].zero_std is False
    assert r.context["components"] == ["accuracy", "format"]
    html = r.content.decode()
    assert html.count('class="completion adv-') == 8
    assert "adv-pos" in html and "adv-neg" in html
    assert "zero variance" in html
    assert '<span class="think refl">Wait</span>' in html  # reflection marker highlighted
    assert '<span class="answer">' in html
    assert "truncated" in html


def test_filters_zero_variance_correct_reflection_length_reward_and_text(client_as):
    run = make_run()
    client = client_as("viewer")
    assert [g.group for g in client.get(step_url(run, 0, "?zero_std=1")).context["groups"]] == [1]
    assert [g.group for g in client.get(step_url(run, 0, "?zero_std=0")).context["groups"]] == [0]
    r = client.get(step_url(run, 0, "?correct=1"))
    (g,) = r.context["groups"]
    assert g.group == 0 and len(g.completions) == 4 and g.matched == 2  # the whole group, 2 matches
    assert sum(c.matched for c in g.completions) == 2
    r = client.get(step_url(run, 0, "?reflection=1"))
    assert r.context["matched"] == 2  # index 0 of each group reflects
    assert client.get(step_url(run, 0, "?truncated=1")).context["matched"] == 2
    assert client.get(step_url(run, 0, "?len_min=40&len_max=50")).context["matched"] == 4  # indexes 2, 3
    assert client.get(step_url(run, 0, "?reward_min=1.2")).context["matched"] == 1
    r = client.get(step_url(run, 0, "?q=What is 1%2B1"))
    assert [g.group for g in r.context["groups"]] == [1]
    r = client.get(step_url(run, 0, "?correct=1&zero_std=1"))
    assert r.context["groups"] == [] and "No group has a completion matching" in r.content.decode()


def test_sort_by_advantage_and_length(client_as):
    run = make_run()
    client = client_as("viewer")
    g0 = client.get(step_url(run, 0, "?sort=-advantage")).context["groups"][0]
    advs = [c.obj.advantage for c in g0.completions]
    assert advs == sorted(advs, reverse=True)
    g0 = client.get(step_url(run, 0, "?sort=-length")).context["groups"][0]
    assert [c.obj.length for c in g0.completions] == [50, 40, 30, 20]


def test_bad_filter_values_get_a_message_not_an_error(client_as):
    run = make_run()
    r = client_as("viewer").get(step_url(run, 0, "?len_min=abc&reward_min=2&reward_max=1"))
    assert r.status_code == 200
    assert "len_min" in r.content.decode() and "must not be below the lower bound" in r.content.decode()
    assert len(r.context["groups"]) == 2  # invalid filters filter nothing


def test_model_text_is_escaped(client_as):
    run = make_run(steps=())
    log(run, group_samples(0, 0, [1.0, 0.0], completions=[f"{XSS}</think><answer>{XSS}</answer>", "<b>bold</b>"], prompt=XSS,
                           prompt_id='"><b>id</b>'))
    html = client_as("viewer").get(step_url(run, 0)).content.decode()
    assert XSS not in html and "<b>bold</b>" not in html and "<b>id</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'prompt_id=%22%3E%3Cb%3Eid%3C%2Fb%3E">prompt &quot;&gt;&lt;b&gt;id&lt;/b&gt; across steps' in html
    html = client_as("researcher").get(reverse("rollouts:run", args=[run.pk]) + "?q=script").content.decode()
    assert XSS not in html and "&lt;script&gt;" in html


def test_prev_next_steps_and_run_page_lists_steps(client_as):
    run = make_run(steps=(0, 5, 9))
    client = client_as("viewer")
    r = client.get(step_url(run, 5))
    assert (r.context["prev_step"], r.context["next_step"]) == (0, 9)
    assert selectors.run_sample_steps(run=run) == [0, 5, 9]
    r = client.get(reverse("rollouts:run", args=[run.pk]))
    assert r.context["steps"] == [0, 5, 9]
    r = client.get(reverse("rollouts:run", args=[run.pk]) + "?correct=0&sort=-length")
    results = r.context["results"]
    assert len(results) == 3 * 6 and all(c.obj.correct is False for c in results)
    assert [c.obj.length for c in results] == sorted((c.obj.length for c in results), reverse=True)


def test_run_search_pages(client_as):
    run = make_run(steps=range(15))  # 8 per step, 120 rows
    client = client_as("viewer")
    url = reverse("rollouts:run", args=[run.pk]) + "?zero_std=1"
    r = client.get(url)
    assert len(r.context["results"]) == 50 and r.context["next_offset"] == 50
    r = client.get(url + "&offset=50")
    assert r.context["results"][0].obj.step == 12 and r.context["prev_offset"] == 0 and r.context["next_offset"] is None


def test_prompt_across_steps(client_as):
    run = make_run(steps=(0, 1, 2))
    log(run, group_samples(3, 0, [1.0, 1.0, 1.0, 0.0], prompt_id="p0"))
    r = client_as("viewer").get(reverse("rollouts:prompt", args=[run.pk]) + "?prompt_id=p0")
    assert r.status_code == 200
    assert r.context["chart"]["steps"] == [0, 1, 2, 3]
    assert r.context["chart"]["accuracy"] == [0.5, 0.5, 0.5, 0.75]
    assert [s["step"] for s in r.context["steps"]] == [0, 1, 2, 3]
    assert client_as("viewer").get(reverse("rollouts:prompt", args=[run.pk]) + "?prompt_id=nope").status_code == 404


def test_aha_link_shows_the_prompts_whose_reflection_rate_moved(client_as):
    run = make_run(steps=(0, 1))  # 1 in 4 completions of each prompt reflects
    reflective = [f"Wait, recheck {i}.</think><answer>1</answer>" for i in range(4)]
    log(run, group_samples(2, 0, [1.0, 0.0, 1.0, 0.0], prompt_id="p0", completions=reflective) + group_samples(2, 1, [0.5] * 4, prompt_id="p1"))
    r = client_as("viewer").get(step_url(run, 2, "?reflection=1"))
    aha = r.context["aha"]
    assert aha[0]["prompt_id"] == "p0" and aha[0]["before"] == 0.25 and aha[0]["after"] == 1.0
    assert r.context["matched"] == 5
    assert "Reflection rate moved at step 2" in r.content.decode()


def test_send_to_curation_makes_a_draft_with_its_source_once(client_as):
    run = make_run()
    client = client_as("annotator")
    sample = Sample.objects.get(run=run, step=1, group=0, index=0)
    back = step_url(run, 1, "?correct=1")
    r = client.post(reverse("rollouts:send"), {"sample": sample.pk, "next": back})
    assert r.status_code == 302 and r["Location"] == back + f"#s{sample.pk}"
    ex = Example.objects.get()
    assert ex.project.slug == "rollout-drafts" and ex.status == "draft" and ex.source == "rollout"
    assert ex.prompt == sample.prompt and ex.reasoning.startswith("I add the numbers 0.") and ex.summary == "0"
    assert ex.source_ref["sample"] == sample.pk and ex.source_ref["run"] == run.pk and ex.source_ref["step"] == 1
    client.post(reverse("rollouts:send"), {"sample": sample.pk})
    assert Example.objects.count() == 1  # the same completion twice: one draft
    other = CurationProject.objects.create(name="Mine", slug="mine")
    client.post(reverse("rollouts:send"), {"sample": sample.pk, "project": other.pk})
    assert Example.objects.filter(project=other, source="rollout").count() == 1


def test_viewer_cannot_send_and_sees_no_send_buttons(client_as):
    run = make_run()
    client = client_as("viewer")
    assert "Send to curation" not in client.get(step_url(run, 0)).content.decode()
    sample = Sample.objects.filter(run=run).first()
    assert client.post(reverse("rollouts:send"), {"sample": sample.pk}).status_code == 403
    assert not Example.objects.exists()


def test_offsite_next_is_ignored(client_as):
    run = make_run()
    sample = Sample.objects.filter(run=run).first()
    r = client_as("researcher").post(reverse("rollouts:send"), {"sample": sample.pk, "next": "https://evil.example/"})
    assert r["Location"].startswith(step_url(run, sample.step))


def test_index_lists_runs_with_rollouts(client_as):
    run = make_run(name="has-rollouts")
    r = client_as("viewer").get(reverse("rollouts:index"))
    assert run in r.context["runs"]
    assert "Rollouts" in r.content.decode()


def test_text_search_over_the_run_reads_a_window_of_steps_at_a_time(client_as, monkeypatch):
    monkeypatch.setattr(selectors, "TEXT_WINDOW_STEPS", 2)
    run = make_run(steps=(0, 1, 2, 3, 4))
    client = client_as("viewer")
    url = reverse("rollouts:run", args=[run.pk]) + "?q=recheck"
    r = client.get(url)
    assert r.context["window"]["first"] == 0 and r.context["window"]["last"] == 1 and r.context["window"]["count"] == 3
    assert {c.obj.step for c in r.context["results"]} == {0, 1} and len(r.context["results"]) == 4
    r = client.get(url + "&window=2")
    assert {c.obj.step for c in r.context["results"]} == {4} and r.context["window"]["next"] is None
    assert "later steps" not in r.content.decode() and "earlier steps" in r.content.decode()
