"""Each role logs in through a real browser and sees what it may see, and not the rest."""
import pytest

from tests.e2e.conftest import login  # noqa: F401  (fixture module)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAGES = {  # path -> roles that may open it (staff may open everything)
    "/runs/": {"researcher", "annotator", "reviewer", "viewer", "staff"},
    "/runs/new/": {"researcher", "staff"},
    "/curation/": {"researcher", "annotator", "reviewer", "viewer", "staff"},
    "/curation/queue/": {"annotator", "reviewer", "staff"},
    "/curation/review/": {"reviewer", "staff"},
}


@pytest.mark.parametrize("role", ["researcher", "annotator", "reviewer", "viewer", "staff"])
def test_role_sees_its_pages(page, live_asgi, login_as, role):
    user = login_as(role)
    assert page.locator(".who .user").inner_text() == user.username
    for path, allowed in PAGES.items():
        response = page.goto(live_asgi + path)
        expected = 200 if role in allowed else 403
        assert response.status == expected, (role, path, response.status)
        if expected == 403:
            assert "not allowed" in page.content()
    nav = page.locator("nav.nav").inner_text()
    assert ("Admin" in nav) is (role == "staff")
    launch_button = page.goto(live_asgi + "/runs/") and page.locator("text=New run").count()
    assert bool(launch_button) is (role in {"researcher", "staff"})


def test_plotly_is_served_locally(page, live_asgi, login_as):
    login_as("viewer")
    response = page.goto(live_asgi + "/static/vendor/plotly/plotly.min.js")
    assert response.status == 200
    assert len(response.body()) > 1_000_000
