"""The live pages' one reconnecting socket (static/js/socket.js), in a real browser against the
real consumers: a socket the server closes for lost access is not opened again."""
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

COUNT_SOCKETS = """window.__sockets = 0;
const Native = window.WebSocket;
window.WebSocket = class extends Native { constructor(...a) { super(...a); window.__sockets += 1; } };"""


def test_a_socket_closed_for_lost_access_says_so_and_is_not_retried(page, live_asgi, login_as):
    # Before socket.js, the runs list (like the run page and the run's status) took every close
    # for a network error: "○ reconnecting", a new socket after 0.5, 1, 2 … 10 s, forever, each
    # one refused. 4403 (no access) and 4404 (gone) are final now.
    page.clock.install()  # real time flows; run_for() below fires every timer the page has set
    page.add_init_script(COUNT_SOCKETS)
    user = login_as("viewer")
    page.goto(live_asgi + "/runs/")
    page.wait_for_selector("#live-indicator:has-text('live')")
    # (an update() sends no signal: the socket's periodic access check, every second here, finds
    # the user inactive and closes it with 4403)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    page.wait_for_selector("#live-indicator:has-text('closed: no access')")
    page.clock.run_for(60_000)  # a minute of the page's timers: any reconnect would have run
    assert page.evaluate("window.__sockets") == 1
    assert page.locator("#live-indicator").inner_text() == "○ closed: no access"
