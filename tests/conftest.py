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
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    while the session's browser is open, and asyncio tests (consumers) cannot start under it."""
    items.sort(key=lambda item: 1 if item.get_closest_marker("e2e") or "/e2e/" in str(item.fspath) else 0)
