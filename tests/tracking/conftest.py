import pytest


@pytest.fixture(autouse=True)
def _fresh_per_process_state():
    """Ingest keeps per-process state keyed by run id (heartbeat throttle, series-id cache). In
    tests each transaction is rolled back and SQLite hands the same ids out again, so a run of an
    earlier test would pass for this one's."""
    from r1lab.tracking import services, store

    services._last_heartbeat.clear()
    store._SERIES_CACHE.clear()
    yield
