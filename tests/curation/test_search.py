"""The examples page's paging (search.ExampleMatches): both ways of fetching a page (all ids known,
or dense matches walked in id order) give exactly the rows of the plain ordered query."""
import re

import pytest
from django.db import connection
from django.urls import reverse

from r1lab.curation.selectors import search
from r1lab.curation.models import Example
from tests.curation.conftest import make_example

pytestmark = pytest.mark.django_db

FIELDS = ("id", "prompt", "status")


@pytest.fixture
def corpus(project, lead):
    # "apples" in every example, "pears" in every third, "plums" in one; zh for every fourth.
    for i in range(14):
        words = ["apples"] + (["pears"] if i % 3 == 0 else []) + (["plums"] if i == 7 else [])
        make_example(project, lead, prompt=f"Example number {i}", reasoning=" and ".join(words) + ".", language="zh" if i % 4 == 0 else "en")
    return project


def pages(project, params, per_page=3):
    f = search.ExampleFilter.from_params(params)
    matches = search.ExampleMatches(search.examples_filtered(project=project, f=f), fields=FIELDS)
    n = matches.count()
    return n, matches.capped, [[e.pk for e in matches[s:s + per_page]] for s in range(0, n, per_page)]


def expected(project, params, per_page=3):
    ids = list(search.examples_filtered(project=project, f=search.ExampleFilter.from_params(params)).order_by("id").values_list("id", flat=True))
    return ids, [ids[s:s + per_page] for s in range(0, len(ids), per_page)]


@pytest.mark.parametrize("params", [{"q": "apples"}, {"q": "pears"}, {"q": "plums"}, {"q": "apples", "language": "zh"}, {}, {"q": "kiwis"}])
@pytest.mark.parametrize("exact_up_to", [100, 4])
def test_both_paths_give_the_plain_pages(corpus, params, exact_up_to, monkeypatch):
    monkeypatch.setattr(search, "EXACT_UP_TO", exact_up_to)
    ids, want = expected(corpus, params)
    n, capped, got = pages(corpus, params)
    assert capped == (len(ids) > exact_up_to)
    assert n == min(len(ids), exact_up_to)
    assert got == want[: len(got)] and len(got) == len(want[: -(-n // 3)])


def test_page_says_capped_count_and_pages(client, corpus, lead, monkeypatch):
    monkeypatch.setattr(search, "EXACT_UP_TO", 4)
    client.force_login(lead)
    url = reverse("curation:examples", kwargs={"slug": corpus.slug})
    html = client.get(url, {"q": "apples"}).content.decode()
    assert re.search(r'id="match-count">\s*4\+ matches', html)
    first = min(Example.objects.filter(project=corpus).values_list("id", flat=True))
    assert f">{first}</a>" in html
    html = client.get(url, {"q": "plums"}).content.decode()
    assert re.search(r'id="match-count">\s*1 match\b', html) and "Example number 7" in html


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's estimate is PostgreSQL's")
def test_dense_matches_are_estimated_not_counted(client, corpus, lead, monkeypatch):
    monkeypatch.setattr(search, "ESTIMATE_ABOVE", 0)  # every estimate (≥ 1 row) counts as dense
    monkeypatch.setattr(search, "EXACT_UP_TO", 4)
    params = {"q": "apples"}
    ids, want = expected(corpus, params)
    f = search.ExampleFilter.from_params(params)
    matches = search.ExampleMatches(search.examples_filtered(project=corpus, f=f), fields=FIELDS)
    assert matches.count() == 4 and matches.capped and matches.estimate >= 1 and matches.ids is None
    assert [e.pk for e in matches[0:3]] == want[0] and [e.pk for e in matches[3:6]] == want[1][:3]
    client.force_login(lead)
    html = client.get(reverse("curation:examples", kwargs={"slug": corpus.slug}), params).content.decode()
    assert re.search(r'id="match-count">about \d+ matches \(an estimate; the first 4 are paged', html)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="planner settings are PostgreSQL's")
def test_planner_settings_do_not_leak_into_a_callers_transaction(corpus):
    from django.db import transaction

    with transaction.atomic():
        f = search.ExampleFilter.from_params({"q": "pears"})
        assert search.ExampleMatches(search.examples_filtered(project=corpus, f=f), fields=FIELDS).count() == 5
        with connection.cursor() as cur:
            cur.execute("SHOW enable_seqscan")
            assert cur.fetchone()[0] == "on"
            cur.execute("SHOW enable_indexscan")
            assert cur.fetchone()[0] == "on"
