import pytest

pytestmark = pytest.mark.django_db

# A channel layer that cannot be reached: its error text names the host and port.
UNREACHABLE_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                 "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}


def test_healthz_is_green(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body == {"ok": True, "database": {"ok": True}, "broker": {"ok": True}, "channel_layer": {"ok": True}}


def test_anonymous_caller_gets_ok_or_down_only_never_the_error_text(client, settings):
    # Before: the anonymous answer carried each component's exception text, here the layer's
    # "Error 111 connecting to 127.0.0.1:1" (with Redis in production: its host name).
    settings.CHANNEL_LAYERS = UNREACHABLE_LAYER
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "database": {"ok": True}, "broker": {"ok": True},
                               "channel_layer": {"ok": False}}
    assert b"127.0.0.1" not in response.content


def test_staff_get_the_detail(client_as, settings):
    settings.CHANNEL_LAYERS = UNREACHABLE_LAYER
    response = client_as("staff").get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["database"]["vendor"] in ("postgresql", "sqlite") and "transport" in body["broker"]
    assert body["channel_layer"]["ok"] is False and "127.0.0.1:1" in body["channel_layer"]["error"]


def test_a_role_is_not_enough_for_the_detail(client_as):
    body = client_as("researcher").get("/healthz").json()
    assert body["database"] == {"ok": True}
