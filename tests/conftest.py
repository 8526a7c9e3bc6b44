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
