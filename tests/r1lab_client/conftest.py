"""One real r1lab server (daphne on the test database) shared by the integration tests of the
`sync-*` commands and the W&B-style API; test_server_client.py starts and stops its own."""
import pytest

from r1lab.accounts.services import api_token_create
from tests.factories import UserFactory
from tests.r1lab_client.test_server_client import Daphne, _port


@pytest.fixture(scope="session")
def r1lab_url(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        server = Daphne(_port(), tmp_path_factory.mktemp("daphne") / "daphne.log")
        server.start()
    yield f"http://127.0.0.1:{server.port}"
    if server.proc.poll() is None:
        server.stop()


@pytest.fixture
def personal_token(transactional_db):
    return api_token_create(user=UserFactory(role="researcher"))[1]
