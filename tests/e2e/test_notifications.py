"""Alarm notifications in a real browser (issue 17 part 5): a researcher sets where a project's
alarms go on the settings page, an alarm is delivered to a local webhook receiver, and the
notifications page lists what was sent and how it went."""
import pytest

from r1lab.tracking import alert_services
from r1lab.tracking.models import AlertKind, AlertSettings, Delivery
from r1lab.tracking.services import tracked_run_create
from tests.tracking.test_alerts import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_settings_then_a_delivery_listed_with_its_result(page, live_asgi, login_as):
    hook = Receiver([500, 200])
    try:
        login_as("researcher")
        page.goto(live_asgi + "/metrics/")
        page.click("text=Notifications")
        page.click("#edit-alert-settings")
        page.wait_for_selector("#alert-settings-form")
        assert page.locator("h1").inner_text() == "Alarm settings: every project"
        # a bad address: refused with its message, nothing saved
        page.fill("#id_webhook_url", hook.url)
        page.fill("#id_emails", "ops@example.org, nope")
        page.click("#alert-settings-form button[type=submit]")
        assert "is not an e-mail address" in page.locator("[data-error-for=emails]").inner_text()
        assert not AlertSettings.objects.exists()
        page.fill("#id_emails", "")
        page.uncheck("input[name=kinds][value=stale]")
        page.fill("#id_stale_after_s", "900")
        page.click("#alert-settings-form button[type=submit]")
        page.wait_for_selector("#deliveries")
        row = AlertSettings.objects.get(project="")
        assert row.webhook_url == hook.url and "stale" not in row.kinds and row.stale_after_s == 900
        assert "(every project)" in page.locator("#alert-settings").inner_text()

        # an alarm fires; the worker's task tries, gets a 500, retries, gets a 200
        run, _ = tracked_run_create(name="<img src=x onerror=alert(1)>", project="p")
        alert = alert_services.alert_raise(run=run, kind=AlertKind.ZERO_STD, step=42,
                                           message="frac_reward_zero_std ≥ 0.9: almost no group carries a learning signal")
        d = alert.deliveries.get()
        assert alert_services.delivery_attempt(delivery_id=d.pk) == alert_services.BACKOFF_S[0]
        page.reload()
        first = page.locator(f"tr[data-delivery='{d.pk}']")
        assert first.get_attribute("data-status") == "pending" and "HTTP 500" in first.inner_text()
        assert alert_services.delivery_attempt(delivery_id=d.pk) is None
        page.reload()
        row = page.locator(f"tr[data-delivery='{d.pk}']")
        assert row.get_attribute("data-status") == "sent"
        cells = row.locator("td").all_inner_texts()
        assert cells[1:7] == ["p", "<img src=x onerror=alert(1)>", "zero-std groups near 1", "42", "webhook",
                              f"http://127.0.0.1:{hook.server.server_port}/…"]
        assert cells[8] == "2" and "HTTP 200" in cells[9]
        assert len(hook.received) == 2 and Delivery.objects.get(pk=d.pk).status == "sent"
    finally:
        hook.close()
