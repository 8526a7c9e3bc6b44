"""The runs list's query language (issue 17 part 3): a table of valid queries and the runs they
find, invalid ones and where they are wrong (column + what was expected), and injection attempts
(quotes, SQL fragments, `__` ORM lookups in paths, huge numbers), on the database the suite runs
on (PostgreSQL in CI, SQLite embedded). None of this existed before: every test here failed."""
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from r1lab.tracking import run_query, selectors
from r1lab.tracking.ingest import parse_log_body
from r1lab.tracking.models import Run
from r1lab.tracking.services import tracked_run_create, tracked_run_log

pytestmark = pytest.mark.django_db


def make(name, project, status, config, metrics, *, stale=False):
    run, _ = tracked_run_create(name=name, project=project, config=config)
    body = {"metrics": [{"step": i, "key": k, "value": v} for k, vals in metrics.items() for i, v in enumerate(vals)]}
    if body["metrics"]:
        tracked_run_log(run_id=run.pk, parsed=parse_log_body(orjson.dumps(body)))
    seen = timezone.now() - timedelta(hours=3) if stale else timezone.now()
    Run.objects.filter(pk=run.pk).update(status=status, last_seen_at=seen)
    return run


@pytest.fixture
def runs():
    make("grpo-a", "p1", "succeeded", {"learning_rate": 1e-6, "template": "r1_zero", "optim": {"beta": 0.04}, "flag": True},
         {"reward": [0.1, 0.7], "rewards/accuracy/mean": [0.5]})
    make("grpo-b", "p1", "failed", {"learning_rate": 3e-6, "template": "r1_zero", "flag": False},
         {"reward": [0.2, 0.9]})
    # an MLflow-style run: its params are strings
    make("smoke-c", "p2", "running", {"learning_rate": "1e-06", "template": "distill"}, {"reward": [0.8, 0.65]})
    make("quiet-d", "p2", "running", {"learning_rate": 1e-6, "template": "R1_Zero", "huge": 10**400, "lr__gt": 5},
         {}, stale=True)


def found(query, user=None):
    tree = run_query.parse(query)
    return sorted(Run.objects.filter(run_query.compile_q(tree)).values_list("name", flat=True))


A, B, C, D = "grpo-a", "grpo-b", "smoke-c", "quiet-d"

VALID = [
    ('config.learning_rate < 2e-6 and reward.last > 0.6 and template = "r1_zero"', [A]),
    ("", [A, B, D, C]),
    ("config.learning_rate < 2e-6", [A, D, C]),  # C's "1e-06" is a numeric string
    ("config.learning_rate = 1e-6", [A, D, C]),
    ("config.learning_rate != 1e-6", [B]),
    ('config.learning_rate = "1e-06"', [C]),  # a string literal compares strings only
    ("learning_rate >= 3e-6", [B]),  # a bare name is a top-level config key
    ("reward.last > 0.6", [A, B, C]),
    ("reward.max >= 0.8", [B, C]),
    ("reward.min < 0.15", [A]),
    ("reward.last != 0.9", [A, C]),
    ("not reward.last > 0.6", [D]),  # `not` is the complement: D has no reward at all
    ("rewards/accuracy/mean.last = 0.5", [A]),
    ("`rewards/accuracy/mean`.max = 0.5", [A]),
    ("config.optim.beta = 0.04", [A]),
    ("flag = true", [A]),
    ("flag != true", [B]),
    ("not flag = true", [B, D, C]),
    ('template ~ "R1"', [A, B, D]),  # contains, case-insensitive
    ('name ~ "grpo" or project = "p2"', [A, B, D, C]),
    ('(status = "failed" or status = "stale")', [B, D]),
    ('status = "running"', [C]),  # D is running but silent: stale, as the list shows it
    ('status != "running" and project = "p2"', [D]),
    ('created >= "2000-01-01"', [A, B, D, C]),
    ('created < "2000-01-01T00:00"', []),
    ('NOT (reward.last > 0.6) AND template ~ "zero"', [D]),  # keywords in any case
    ("config.huge > 1", [D]),  # a 401-digit integer in a config: compared, not a 500
    ("config.learning_rate < 99999999999999999999999999999999999999999999999999", [A, B, D, C]),
    ("reward.last > -1e308", [A, B, C]),
]


@pytest.mark.parametrize("query,expected", VALID)
def test_valid_queries_find_their_runs(runs, query, expected):
    assert found(query) == sorted(expected)


INVALID = [
    ("reward.last >", 14, "expected a value"),
    ("config.lr < 2e-6 and", 21, "expected a field"),
    ("(a = 1", 7, "expected ')'"),
    ("a = 1)", 6, "closes no '('"),
    ("a = 1 b = 2", 7, "expected `and`, `or` or the end of the query"),
    ('reward.last = "x"', 15, "reward.last is a number"),
    ("reward.mean > 1", 1, "expected a metric summary <key>.last, .min or .max"),
    ("rewards/accuracy/mean > 0.5", 1, "looks like a metric key"),
    ("`my key` > 1", 10, "expected .last, .min or .max"),
    ("a == 1", 3, "expected one of"),
    ("a ! 1", 3, "expected '!='"),
    ("reward.last ~ 1", 13, "is a number"),
    ("name < \"b\"", 6, "name is text: expected =, != or ~"),
    ("name = 1", 8, "name is text"),
    ("config.x ~ 3", 10, "takes a \"quoted string\""),
    ("config.x < \"b\"", 10, "a string compares with =, != or ~"),
    ("flag > true", 6, "true/false compare with = or != only"),
    ('status = "nope"', 10, "status is one of"),
    ('created > "yesterday"', 11, "expected a date"),
    ("config.a..b = 1", 1, "expected a config path"),
    ("config = 1", 1, "expected a config path"),
    ("and", 1, "expected a field"),
    ("name = 'x", 8, "expected a closing '"),
    ("reward.last > 0.5x", 18, "expected an operator"),
]


@pytest.mark.parametrize("query,column,message", INVALID)
def test_invalid_queries_say_where_and_what_was_expected(query, column, message):
    with pytest.raises(run_query.QueryError) as err:
        run_query.parse(query)
    assert err.value.column == column, str(err.value)
    assert message in err.value.message


def test_limits_are_errors_not_crashes():
    for query, column, message in [
        ("a = 1e999", 5, "out of range"),
        ("a = 1" + "0" * 400, 5, "out of range"),
        ("(" * 40 + "a = 1" + ")" * 40, 33, "nests deeper"),
        ("not " * 40 + "a = 1", 129, "nests deeper"),
        ("a = 1 or " * 300 + "a = 1", 2001, "longer than 2000"),
        ('name = "' + "x" * 600 + '"', 8, "at most 500"),
    ]:
        with pytest.raises(run_query.QueryError) as err:
            run_query.parse(query)
        assert (err.value.column, message in err.value.message) == (column, True), str(err.value)


INJECTIONS = [
    # quotes and SQL fragments inside strings are values
    ('name = "x\\" or 1=1 --"', []),
    ("name = \"grpo-a'; DROP TABLE tracking_run; --\"", []),
    ('template = "r1_zero\\") OR (\\"1\\"=\\"1"', []),
    ("`reward'); DROP TABLE tracking_series; --`.last > 0", []),
    # LIKE wildcards are literal in ~
    ('name ~ "%"', []),
    ('name ~ "_"', []),
    ('template ~ "r1%zero"', []),
    # `__` in a path is part of a key's name, never an ORM lookup
    ("config.learning_rate__lt = 1", []),
    ("config.lr__gt = 5", [D]),  # D's config really has a key "lr__gt"
    ("lr__gt__isnull = true", []),
    ("reward__gt.last > 0", []),
    ("config.template__contains = \"r1\"", []),
    # a JSON path cannot be smuggled in through a segment
    ("config.optim = 1", []),
]


@pytest.mark.parametrize("query,expected", INJECTIONS)
def test_injection_attempts_are_values(runs, query, expected):
    assert found(query) == sorted(expected)
    assert Run.objects.count() == 4  # nothing dropped, nothing changed


@pytest.mark.parametrize("query,column", [
    ("name = 'grpo-a'' OR ''1''=''1'", 16),  # SQL-style quote doubling: two strings in a row
    ("config.a;b = 1", 9),
    ("name = \"a\" -- comment", 12),
    ("name = \"a\" /* x */", 12),
    ("config.$.x = 1", 8),
    ("config.a[0] = 1", 9),
])
def test_injection_attempts_that_do_not_parse(runs, query, column):
    with pytest.raises(run_query.QueryError) as err:
        run_query.parse(query)
    assert err.value.column == column, str(err.value)


def test_runs_find_sorts_pages_and_shows_the_columns_it_read(runs, make_user):
    user = make_user("viewer")
    table = selectors.runs_find(user=user, query="reward.last > 0", sort="-reward.last", columns="config.learning_rate")
    assert [r.name for r in table.runs] == [B, A, C]
    assert [c.label for c in table.columns] == ["config.learning_rate", "reward.last"]
    assert table.added == {"reward.last"}  # read by the query and the sort, not chosen
    assert [v for _, v in table.rows] == [[3e-6, 0.9], [1e-6, 0.7], ["1e-06", 0.65]]
    table = selectors.runs_find(user=user, sort="config.learning_rate", columns="reward.min,reward.max")
    # numeric strings sort as numbers (C's "1e-06" ties with A's and D's 1e-6), on either database
    assert table.total == 4 and table.runs[-1].name == B and {r.name for r in table.runs[:3]} == {A, C, D}
    assert [v for r, v in table.rows if r.name == B] == [[0.2, 0.9, 3e-6]]  # + the sort's column
    table = selectors.runs_find(user=user, sort="-template", columns="")
    assert [r.name for r in table.runs if r.name != D][-1] == C  # "distill" after "r1_zero" (D: by collation)
    with pytest.raises(run_query.QueryError) as err:
        selectors.runs_find(user=user, sort="-reward.avg")
    assert err.value.param == "sort" and err.value.column == 2
    with pytest.raises(run_query.QueryError) as err:
        selectors.runs_find(user=user, columns="reward.last, kl.mean")
    assert err.value.param == "cols" and err.value.column == 14


def test_the_runs_list_page_is_its_url(runs, client_as):
    client = client_as("viewer")
    r = client.get("/metrics/", {"q": 'reward.last > 0.6 and template = "r1_zero"', "sort": "reward.last",
                                 "cols": "config.learning_rate"})
    assert r.status_code == 200
    html = r.content.decode()
    rows = [line for line in html.splitlines() if "data-run-id=" in line]
    assert len(rows) == 2 and "grpo-a" in html and "grpo-b" in html and "smoke-c" not in html
    assert html.index(">grpo-a<") < html.index(">grpo-b<")  # ascending reward.last: 0.7, 0.9
    assert 'data-col="reward.last" aria-sort="ascending"' in html
    assert "?q=reward.last" in html and "sort=-reward.last" in html  # the header sorts the other way
    assert "2 runs match" in html and "3e-06" in html and "1e-06" in html


def test_a_bad_query_is_a_400_that_says_where(runs, client_as):
    client = client_as("viewer")
    r = client.get("/metrics/", {"q": 'reward.last > 0.6 and template = <script>'})
    assert r.status_code == 400
    html = r.content.decode()
    assert "column 34:" in html and "expected a value" in html
    assert "<script>" not in html.split("<main")[-1].split("</pre>")[0]  # the query is echoed escaped
    assert "&lt;script&gt;" in html
    assert "data-run-id" not in html
    r = client.get("/metrics/", {"cols": "reward.avg"})
    assert r.status_code == 400 and "Columns, column 1:" in r.content.decode()
    r = client.get("/metrics/", {"sort": "-`x"})
    assert r.status_code == 400 and "Sort, column 2:" in r.content.decode()
