import pytest

from tests.factories import PASSWORD, UserFactory


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def make_user(db):
    def _make(role: str | None = None, **kwargs):
        if role == "staff":
            return UserFactory(is_staff=True, is_superuser=True, **kwargs)
        return UserFactory(role=role, **kwargs)

    return _make


@pytest.fixture
def client_as(client, make_user):
    """`client_as("viewer")` → a test client logged in as a new user with that role."""

    def _login(role: str | None = None, **kwargs):
        user = make_user(role, **kwargs)
        client.force_login(user)
        client.user = user
        return client

    return _login


def pytest_collection_modifyitems(config, items):
    """Tests that open the browser run last: Playwright's sync API keeps an event loop running
    in the main thread while the session's browser is open, and neither asyncio tests
    (consumers) nor code calling async_to_sync (services that push live events) can run under
    it. Other e2e tests (real workers, no browser) run just before them."""

    def rank(item) -> int:
        if "browser" in getattr(item, "fixturenames", ()):
            return 2
        return 1 if "/e2e/" in str(item.fspath) else 0

    items.sort(key=rank)


@pytest.fixture
def in_memory_channel_layer(settings):
    """Consumers run in pytest-asyncio's event loop on the in-memory channel layer.

    With the Redis layer (CI sets REDIS_URL) a consumer still blocked in channels_redis's BZPOPMIN
    when the test's loop shuts down must be cancelled there, and once in a full CI run that
    cancellation never finished: the teardown hung until pytest-timeout (900 s). The Redis layer
    is exercised where it runs in production, by the daphne servers of tests/e2e and
    tests/r1lab_client, and by benchmarks/live_latency.py."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
