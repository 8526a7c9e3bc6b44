"""Alarms that notify (issue 17 part 5): a webhook delivered to a local test HTTP server (a real
server in a thread, a real HTTP request), retried on a 500, never sent twice; e-mail through
Django's mail backend; the scan that finds curve alarms and stale runs; per-project settings and
thresholds; the notifications page. None of this existed before: every test here failed."""
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from django.core import mail
from django.utils import timezone

from r1lab.tracking import alert_services, selectors
from r1lab.tracking.ingest import parse_log_body
from r1lab.tracking.models import Alert, AlertKind, AlertSettings, Delivery, Run
from r1lab.tracking.services import tracked_run_create, tracked_run_log
from r1lab.tracking.tasks import deliver_alert

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST with the next scripted status (the last
    one repeats) and keeps what it got."""

    def __init__(self, statuses):
        self.statuses, self.received = list(statuses), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append({"path": self.path, "body": json.loads(body), "type": self.headers["Content-Type"]})
                code = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"upstream trouble")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*statuses):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def settings_for(project="p", **kw):
    return AlertSettings.objects.create(project=project, **kw)


def make_run(name="grpo <b>&</b> run", project="p", **kw):
    run, _ = tracked_run_create(name=name, project=project, **kw)
    return run


def test_a_webhook_is_delivered_retried_on_a_500_and_not_sent_twice(receiver):
    hook = receiver(500, 200)
    settings_for(webhook_url=hook.url)
    run = make_run()
    alert = alert_services.alert_raise(run=run, kind=AlertKind.ENTROPY_COLLAPSE, step=120,
                                       message="entropy collapsed below 10% of its start (2.1)")
    (d,) = alert.deliveries.all()
    assert (d.channel, d.status, d.target) == ("webhook", "pending", hook.url)

    deliver_alert.apply(args=[d.pk])  # the Celery task, run eagerly: 500, its retry, 200
    d.refresh_from_db()
    assert (d.status, d.attempts, d.response_code, d.last_error) == ("sent", 2, 200, "")
    assert len(hook.received) == 2 and hook.received[0]["body"] == hook.received[1]["body"]
    body = hook.received[0]["body"]
    assert hook.received[0]["type"] == "application/json"
    # Slack's incoming-webhook body; the run's name is escaped as Slack asks (&, <, >)
    assert "grpo &lt;b&gt;&amp;&lt;/b&gt; run" in body["text"] and "<b>" not in body["text"]
    assert "entropy collapse" in body["text"] and "at step 120" in body["text"]
    assert f"/metrics/runs/{run.pk}/|open the run>" in body["text"]
    assert body["blocks"][0]["type"] == "section" and body["blocks"][0]["text"]["type"] == "mrkdwn"

    # not twice: the task again (a redelivered message), the same alarm again (the next scan)
    deliver_alert.apply(args=[d.pk])
    assert alert_services.alert_raise(run=run, kind=AlertKind.ENTROPY_COLLAPSE, step=130, message="again") is None
    assert len(hook.received) == 2 and Delivery.objects.count() == 1
    # the same alarm in a later step window is news
    later = alert_services.alert_raise(run=run, kind=AlertKind.ENTROPY_COLLAPSE, step=1200, message="again")
    assert later is not None and later.key == "w1" and Delivery.objects.count() == 2


def test_a_4xx_is_final_and_5xx_back_off_until_they_give_up(receiver):
    gone = receiver(404)
    settings_for(webhook_url=gone.url)
    run = make_run()
    d = alert_services.alert_raise(run=run, kind=AlertKind.ZERO_STD, step=5, message="m").deliveries.get()
    assert alert_services.delivery_attempt(delivery_id=d.pk) is None
    d.refresh_from_db()
    assert (d.status, d.attempts, d.response_code) == ("failed", 1, 404) and "HTTP 404" in d.last_error

    down = receiver(503)
    AlertSettings.objects.filter(project="p").update(webhook_url=down.url)
    d = alert_services.alert_raise(run=run, kind=AlertKind.LANGUAGE_MIXING, step=5, message="m").deliveries.get()
    waits = [alert_services.delivery_attempt(delivery_id=d.pk) for _ in range(alert_services.MAX_ATTEMPTS)]
    assert waits == [*alert_services.BACKOFF_S, None]  # 10, 30, 90, 270, 810 s, then it gives up
    d.refresh_from_db()
    assert (d.status, d.attempts, d.response_code) == ("failed", alert_services.MAX_ATTEMPTS, 503)
    assert alert_services.delivery_attempt(delivery_id=d.pk) is None and len(down.received) == alert_services.MAX_ATTEMPTS


def test_an_unreachable_webhook_is_retried_with_the_error_recorded(receiver):
    hook = receiver(200)
    url = hook.url
    hook.close()  # nothing listens there any more
    settings_for(webhook_url=url)
    d = alert_services.alert_raise(run=make_run(), kind=AlertKind.STALE, step=1, message="m").deliveries.get()
    assert alert_services.delivery_attempt(delivery_id=d.pk) == 10
    d.refresh_from_db()
    assert d.status == "pending" and d.attempts == 1 and "ConnectionError" in d.last_error


def test_a_delivery_claimed_by_another_task_is_left_alone(receiver):
    hook = receiver(200)
    settings_for(webhook_url=hook.url)
    d = alert_services.alert_raise(run=make_run(), kind=AlertKind.STALE, step=1, message="m").deliveries.get()
    Delivery.objects.filter(pk=d.pk).update(status="sending", claimed_at=timezone.now())
    assert alert_services.delivery_attempt(delivery_id=d.pk) is None and hook.received == []
    # a claim older than CLAIM_TIMEOUT_S is a task that died: the delivery is tried again
    Delivery.objects.filter(pk=d.pk).update(claimed_at=timezone.now() - timedelta(seconds=alert_services.CLAIM_TIMEOUT_S + 1))
    assert alert_services.delivery_attempt(delivery_id=d.pk) is None and len(hook.received) == 1
    assert Delivery.objects.get(pk=d.pk).status == "sent"


def test_e_mail_goes_through_djangos_mail_backend():
    settings_for(emails="ops@example.org,\nlead@example.org")
    run = make_run(name="evil\nBcc: everyone@example.org")
    alert = alert_services.alert_raise(run=run, kind=AlertKind.CRASHED, step=None, key="attempt-1",
                                       message="stage attempt 1: worker lost")
    d = alert.deliveries.get()
    assert d.channel == "email" and d.target == "ops@example.org, lead@example.org"
    deliver_alert.apply(args=[d.pk])
    d.refresh_from_db()
    assert d.status == "sent" and d.attempts == 1
    (msg,) = mail.outbox
    assert msg.to == ["ops@example.org", "lead@example.org"] and msg.bcc == []
    assert msg.subject == "[r1lab] crashed run (trainer crashed, worker lost): evil Bcc: everyone@example.org"
    assert "worker lost" in msg.body and f"/metrics/runs/{run.pk}/" in msg.body


def test_nothing_is_sent_without_settings_a_channel_or_the_kind():
    run = make_run()
    assert alert_services.alert_raise(run=run, kind=AlertKind.STALE, step=1, message="m") is None  # no settings
    settings_for()  # settings, but neither a webhook nor an address
    assert alert_services.alert_raise(run=run, kind=AlertKind.STALE, step=1, message="m") is None
    AlertSettings.objects.filter(project="p").update(emails="a@example.org", kinds=[AlertKind.CRASHED])
    assert alert_services.alert_raise(run=run, kind=AlertKind.STALE, step=1, message="m") is None  # kind off
    assert alert_services.alert_raise(run=run, kind=AlertKind.CRASHED, step=1, key="attempt-1", message="m") is not None
    # the row for every project applies where a project has none
    AlertSettings.objects.create(project="", emails="all@example.org")
    other = make_run(project="another")
    assert alert_services.alert_raise(run=other, kind=AlertKind.STALE, step=1, message="m").deliveries.get().target \
        == "all@example.org"
    assert Alert.objects.count() == 2


def log(run, points):
    tracked_run_log(run_id=run.pk, parsed=parse_log_body(orjson.dumps(
        {"metrics": [{"step": s, "key": k, "value": v} for k, s, v in points]})))


def test_the_scan_raises_curve_alarms_and_stale_runs_once(django_capture_on_commit_callbacks):
    settings_for(emails="ops@example.org", stale_after_s=600, step_window=1000)
    collapsing = make_run(name="collapsing")
    log(collapsing, [("entropy", s, 2.0 if s < 20 else 0.05) for s in range(40)])
    healthy = make_run(name="healthy")
    log(healthy, [("entropy", s, 2.0) for s in range(40)])
    elsewhere = make_run(name="elsewhere", project="no-settings")
    log(elsewhere, [("entropy", s, 2.0 if s < 20 else 0.05) for s in range(40)])
    silent = make_run(name="silent")
    log(silent, [("reward", s, 0.5) for s in range(7)])
    Run.objects.filter(pk=silent.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=False) as sent:
        raised = alert_services.alarms_scan()
    assert sorted((a.run.name, a.kind, a.step, a.key) for a in raised) == [
        ("collapsing", "entropy_collapse", 20, "w0"), ("silent", "stale", 6, "a1-s6")]
    assert "no report for 60 min" in next(a.message for a in raised if a.kind == "stale")
    assert len(sent) == 2  # each alert's deliveries are queued after commit
    assert alert_services.alarms_scan() == []  # the next scan: nothing new, nothing re-sent
    assert Delivery.objects.count() == 2
    # thresholds are the project's: at 2% of its start entropy has not collapsed (0.05 / 2.0 = 2.5%)
    AlertSettings.objects.filter(project="p").update(entropy_collapse_frac=0.02)
    assert selectors.run_signals(run=collapsing)["alarms"] == []
    assert selectors.run_signals(run=Run.objects.get(pk=elsewhere.pk))["alarms"][0]["kind"] == "entropy_collapse"


def test_settings_page_edits_a_projects_settings_and_refuses_bad_input(client_as):
    viewer = client_as("viewer")
    assert viewer.get("/metrics/notifications/settings/?project=p").status_code == 403
    assert viewer.get("/metrics/notifications/").status_code == 200
    client = client_as("researcher")
    r = client.get("/metrics/notifications/settings/?project=p")
    assert r.status_code == 200 and 'name="webhook_url"' in r.content.decode()
    good = {"project": "p", "webhook_url": "https://hooks.slack.com/services/T/B/x", "emails": "a@example.org",
            "kinds": ["entropy_collapse", "stale"], "step_window": "500", "entropy_collapse_frac": "0.05",
            "zero_std_frac": "0.95", "length_rise_frac": "0.3", "accuracy_flat_abs": "0.01",
            "language_mixing_rise": "0.2", "stale_after_s": "900"}
    for field, bad, needle in [("webhook_url", "javascript:alert(1)", "Enter a valid URL"),
                               ("webhook_url", "ftp://example.org/x", "Enter a valid URL"),
                               ("emails", "a@example.org, not-an-address", "is not an e-mail address"),
                               ("zero_std_frac", "1.5", "must be in (0, 1]"),
                               ("entropy_collapse_frac", "nan", "Enter a number"),
                               ("stale_after_s", "5", "between 30 s and 30 days"),
                               ("kinds", ["nope"], "Select a valid choice")]:
        r = client.post("/metrics/notifications/settings/", {**good, field: bad})
        assert r.status_code == 400 and needle in r.content.decode(), (field, bad)
        assert not AlertSettings.objects.exists()  # nothing changed
    r = client.post("/metrics/notifications/settings/", good)
    assert r.status_code == 302 and r["Location"] == "/metrics/notifications/?project=p"
    s = AlertSettings.objects.get(project="p")
    assert (s.webhook_url, s.email_list, s.kinds, s.step_window, s.stale_after_s, s.zero_std_frac) == (
        "https://hooks.slack.com/services/T/B/x", ["a@example.org"], ["entropy_collapse", "stale"], 500, 900, 0.95)
    assert s.updated_by == client.user
    assert selectors.alert_thresholds(project="p").entropy_collapse_frac == 0.05


def test_notifications_page_lists_deliveries_escaped_with_the_webhook_secret_masked(client_as, receiver):
    hook = receiver(200)
    settings_for(webhook_url=hook.url, emails="ops@example.org")
    alert = alert_services.alert_raise(run=make_run(name="<script>x</script>"), kind=AlertKind.STAGE_FAILED, step=3,
                                       key="attempt-1", message="stage attempt 1: bad spec")
    for d in alert.deliveries.all():
        alert_services.delivery_attempt(delivery_id=d.pk)
    html = client_as("viewer").get("/metrics/notifications/").content.decode()
    assert html.count('data-status="sent"') == 2
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x</script>" not in html
    assert f"http://127.0.0.1:{hook.server.server_port}/…" in html and "secret" not in html
    assert "ops@example.org" in html and "failed stage" in html and "HTTP 200" in html
