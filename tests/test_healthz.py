import pytest


@pytest.mark.django_db
def test_healthz_is_green(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert body["database"]["ok"] and body["broker"]["ok"] and body["channel_layer"]["ok"]
