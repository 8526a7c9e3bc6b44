"""Request guards for every view (r1lab/middleware.py)."""
import pytest

from r1lab.tracking.services import tracked_run_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/rollouts/runs/{id}/prompt/?prompt_id=%00", "/curation/queue/?q=a%00",
                                 "/metrics/runs/{id}/data.json?keys=re%00ward", "/metrics/?pro%00ject=x"])
def test_a_nul_in_the_query_is_a_400_naming_the_parameter(client_as, url):
    """On PostgreSQL, `?prompt_id=%00` reached a filter and answered 500 (DataError)."""
    run, _ = tracked_run_create(name="r")
    r = client_as("staff").get(url.format(id=run.pk))
    assert r.status_code == 400
    assert "NUL" in r.content.decode()


def test_api_gets_json(client):
    r = client.get("/api/v1/runs?project=%00")
    assert r.status_code == 400 and "NUL" in r.json()["error"]
