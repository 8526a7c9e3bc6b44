"""The permission matrix is enforced on every view: 403 for a role without the action."""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from r1lab.accounts.permissions import MATRIX, can

pytestmark = pytest.mark.django_db

# Views that are public or authenticate by API token instead of session roles.
UNGUARDED_PREFIXES = ("admin/", "login/", "logout/", "healthz", "api/v1/")


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def test_every_html_view_names_its_action():
    missing = []
    for route, view in _walk(get_resolver().url_patterns):
        if route.startswith(UNGUARDED_PREFIXES) or route == "":
            continue
        action = getattr(view, "r1lab_action", None)
        if action is None:
            missing.append(route)
        else:
            assert action in MATRIX
    assert not missing, f"views without @require_action: {missing}"


@pytest.mark.parametrize(
    "role,action,allowed",
    [
        ("researcher", "runs.launch", True),
        ("viewer", "runs.launch", False),
        ("annotator", "runs.launch", False),
        ("viewer", "runs.view", True),
        ("annotator", "curation.annotate", True),
        ("annotator", "curation.review", False),
        ("reviewer", "curation.review", True),
        ("viewer", "curation.annotate", False),
        ("staff", "curation.review", True),
        (None, "runs.view", False),
    ],
)
def test_matrix(make_user, role, action, allowed):
    assert can(make_user(role), action) is allowed


def test_viewer_posting_to_launch_gets_403_and_nothing_is_created(client_as):
    from r1lab.pipelines.models import PipelineRun

    client = client_as("viewer")
    before = PipelineRun.objects.count()
    response = client.post(reverse("pipelines:new"), {"name": "sneaky", "template": "r1_zero"})
    assert response.status_code == 403
    assert PipelineRun.objects.count() == before


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("pipelines:list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role,url_name,status", [
    ("annotator", "curation:review", 403),
    ("reviewer", "curation:review", 200),
    ("viewer", "curation:queue", 403),
    ("annotator", "curation:queue", 200),
    ("researcher", "pipelines:new", 200),
])
def test_pages_by_role(client_as, role, url_name, status):
    assert client_as(role).get(reverse(url_name)).status_code == status


def test_admin_is_staff_only(client_as):
    assert client_as("researcher").get("/admin/").status_code == 302  # admin login page
    assert client_as("staff").get("/admin/").status_code == 200
