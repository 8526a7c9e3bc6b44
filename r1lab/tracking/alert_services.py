"""Alarms that notify (issue 17 part 5). Writes: a project's alert settings, an alert raised once per
(run, kind, key), its deliveries (a Slack-compatible webhook, e-mail through Django's mail backend),
one delivery try, and the periodic scan.

    curve alarms (curve_signals.alarms)  ─┐
    stale runs (the scan)                 ├─> alert_raise ─> Alert (unique run, kind, key)
    crashed run / failed stage (attempts) ┘        └─> Delivery per channel ─(after commit)─> tasks.deliver_alert
                                                                                   (queue default, one try each,
                                                                                    retried with backoff)

`key` makes "once": a curve alarm's step window (`w<step // step_window>`), a status alarm's
attempt. A delivery is claimed (pending → sending) in its own transaction before the request, and
sent only while claimed: a redelivered task, a second task for the same delivery, a scan that sees
the alarm again all find it claimed or sent and do nothing. A task killed between the request and
recording its answer leaves the claim; the scan hands it to a new task once the claim is
CLAIM_TIMEOUT_S old (at-least-once: the receiver may then see it twice, the one case where it can).

Never in a request: the views only edit settings and list deliveries.
"""
from __future__ import annotations

import logging
import smtplib
from datetime import timedelta

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from r1lab.tracking import selectors
from r1lab.tracking.models import Alert, AlertKind, AlertSettings, Delivery, Run, Series

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_S = (10, 30, 90, 270, 810)  # before the 2nd … 6th try
CLAIM_TIMEOUT_S = 600
WEBHOOK_TIMEOUT_S = 10
CURVE_KINDS = {AlertKind.ENTROPY_COLLAPSE, AlertKind.ZERO_STD, AlertKind.LENGTH_WITHOUT_ACCURACY, AlertKind.LANGUAGE_MIXING}


# --- settings -----------------------------------------------------------------------------------------


def alert_settings_save(*, project: str, values: dict, user) -> AlertSettings:
    """Create or update the settings of `project` ("" = every project without its own) from a
    validated form's values."""
    with transaction.atomic():
        row, _ = AlertSettings.objects.select_for_update().get_or_create(project=project)
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_by = user
        row.save()
    return row


# --- raising --------------------------------------------------------------------------------------------


def _channels(row: AlertSettings) -> list[tuple[str, str]]:
    out = []
    if row.webhook_url:
        out.append((Delivery.Channel.WEBHOOK, row.webhook_url))
    if row.email_list:
        out.append((Delivery.Channel.EMAIL, ", ".join(row.email_list)))
    return out


def alert_raise(*, run: Run, kind: str, step: int | None, message: str, key: str | None = None,
                row: AlertSettings | None = None) -> Alert | None:
    """The alert for this run, kind and key, with a delivery per channel of the run's project,
    sent after commit; None when the project notifies nobody of this kind, or when it was raised
    before (then nothing is sent again)."""
    row = row or selectors.alert_settings_for(project=run.project)
    if row is None or kind not in (row.kinds or []) or not _channels(row):
        return None
    if key is None:
        key = f"w{(step or 0) // max(1, row.step_window)}"
    with transaction.atomic():
        alert, created = Alert.objects.get_or_create(
            run=run, kind=kind, key=key[:64],
            defaults={"project": run.project, "step": step, "message": message[:2000]})
        if not created:
            return None
        deliveries = Delivery.objects.bulk_create([
            Delivery(alert=alert, channel=channel, target=target,
                     payload=webhook_body(alert) if channel == Delivery.Channel.WEBHOOK else email_payload(alert))
            for channel, target in _channels(row)])
        ids = [d.pk for d in deliveries] if all(d.pk for d in deliveries) else list(
            Delivery.objects.filter(alert=alert).values_list("id", flat=True))
        transaction.on_commit(lambda: _enqueue(ids))
    log.info("alert %s for run %s (%s) at step %s", kind, run.pk, key, step)
    return alert


def _enqueue(ids: list[int]) -> None:
    from r1lab.tracking.tasks import DEFAULT_QUEUE, deliver_alert

    for pk in ids:
        deliver_alert.apply_async(args=[pk], queue=DEFAULT_QUEUE)


# --- what is sent ---------------------------------------------------------------------------------------


def _slack_text(value: str, limit: int = 300) -> str:
    """Untrusted text (run names, projects) in Slack's mrkdwn: &, <, > escaped as Slack asks, so a
    run called `<!channel>` pings nobody and cannot forge a link."""
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_url(run: Run) -> str:
    return settings.R1LAB_PUBLIC_URL + reverse("tracking:run", args=[run.pk])


def webhook_body(alert: Alert) -> dict:
    """Slack's incoming-webhook body (`text`, and `blocks` for the layout); Mattermost, Rocket.Chat,
    Discord's /slack endpoint and Teams' Slack-compatible connectors read the same."""
    run = alert.run
    label = AlertKind(alert.kind).label
    name, project, message = _slack_text(run.name), _slack_text(run.project), _slack_text(alert.message, 1000)
    at = f" at step {alert.step}" if alert.step is not None else ""
    url = run_url(run)
    return {
        "text": f"r1lab alarm: {label} in run {name} (project {project}){at}: {message} <{url}|open the run>",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f":rotating_light: *{label}* in run *{name}*{at}\n{message}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"project {project} · <{url}|open the run> · r1lab"}]},
        ],
    }


def email_payload(alert: Alert) -> dict:
    run = alert.run
    label = AlertKind(alert.kind).label
    at = f" at step {alert.step}" if alert.step is not None else ""
    # one line: a header cannot be split by a run name holding a newline
    subject = " ".join(f"[r1lab] {label}: {run.name}{at}".split())[:200]
    text = (f"{label} in run {run.name} (project {run.project}){at}.\n\n{alert.message}\n\n{run_url(run)}\n\n"
            f"-- r1lab: the project's alarm settings are on the notifications page.\n")
    return {"subject": subject, "text": text}


# --- one try ----------------------------------------------------------------------------------------------


def _send(d: Delivery) -> tuple[bool, int | None, str, bool]:
    """(sent, HTTP status, error text, permanent: no point retrying)."""
    if d.channel == Delivery.Channel.WEBHOOK:
        try:
            r = requests.post(d.target, json=d.payload, timeout=WEBHOOK_TIMEOUT_S, allow_redirects=False,
                              headers={"User-Agent": "r1lab-alerts"})
        except requests.RequestException as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:500], False
        if 200 <= r.status_code < 300:
            return True, r.status_code, "", False
        retry = r.status_code in (408, 425, 429) or r.status_code >= 500
        return False, r.status_code, f"HTTP {r.status_code}: {r.text[:300]}", not retry
    try:
        msg = EmailMessage(d.payload.get("subject", "[r1lab] alarm"), d.payload.get("text", ""),
                           settings.DEFAULT_FROM_EMAIL, [a.strip() for a in d.target.split(",") if a.strip()])
        msg.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        return False, None, f"recipients refused: {exc}"[:500], True
    except (smtplib.SMTPException, OSError) as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:500], False
    return True, None, "", False


def delivery_attempt(*, delivery_id: int) -> int | None:
    """One try of one delivery. Returns the seconds to wait before the next try, or None: sent,
    given up, or not this task's to send (sent already, claimed by another task)."""
    now = timezone.now()
    with transaction.atomic():
        d = (Delivery.objects.select_for_update(skip_locked=True).select_related("alert", "alert__run")
             .filter(pk=delivery_id).first())
        if d is None or d.status in (Delivery.Status.SENT, Delivery.Status.FAILED):
            return None
        if d.status == Delivery.Status.SENDING and d.claimed_at and (now - d.claimed_at).total_seconds() < CLAIM_TIMEOUT_S:
            return None
        d.status, d.claimed_at, d.attempts = Delivery.Status.SENDING, now, d.attempts + 1
        d.save(update_fields=["status", "claimed_at", "attempts"])
    sent, code, error, permanent = _send(d)  # no transaction held across the network
    fields = {"response_code": code, "last_error": error}
    retry_in = None
    if sent:
        fields.update(status=Delivery.Status.SENT, sent_at=timezone.now())
    elif permanent or d.attempts >= MAX_ATTEMPTS:
        fields.update(status=Delivery.Status.FAILED)
    else:
        fields.update(status=Delivery.Status.PENDING)
        retry_in = BACKOFF_S[min(d.attempts, len(BACKOFF_S)) - 1]
    Delivery.objects.filter(pk=d.pk, status=Delivery.Status.SENDING, claimed_at=d.claimed_at).update(**fields)
    return retry_in


# --- the periodic scan ------------------------------------------------------------------------------------


def alarms_scan(*, now=None) -> list[Alert]:
    """Curve alarms of the runs that reported lately, and stale runs, of every project with alert
    settings (every project, when the row for all exists); then deliveries whose task was lost."""
    now = now or timezone.now()
    rows = {r.project: r for r in AlertSettings.objects.all()}
    if not rows:
        return []
    default = rows.get("")
    runs = Run.objects.all() if default else Run.objects.filter(project__in=list(rows))
    runs = runs.order_by().only("id", "name", "project", "status", "attempt", "created_at", "last_seen_at",
                                "first_attempt")
    raised: list[Alert] = []
    recent = now - timedelta(seconds=max(3 * settings.R1LAB_ALERT_SCAN_S, 120))
    for run in runs.filter(last_seen_at__gte=recent):
        row = rows.get(run.project) or default
        if not (set(row.kinds or []) & CURVE_KINDS) or not _channels(row):
            continue
        windows = selectors.run_series_data(run=run, keys=selectors.SIGNAL_KEYS, max_points=selectors.PAGE_MAX_POINTS)
        for a in selectors.signals_from(windows["series"], selectors.thresholds_of(row))["alarms"]:
            alert = alert_raise(run=run, kind=a["kind"], step=a["step"], message=a["message"], row=row)
            if alert:
                raised.append(alert)
    for run in runs.filter(status=Run.Status.RUNNING):
        row = rows.get(run.project) or default
        seen = run.last_seen_at or run.created_at
        if AlertKind.STALE not in (row.kinds or []) or (now - seen).total_seconds() <= row.stale_after_s:
            continue
        last = Series.objects.filter(run=run).aggregate(s=Max("last_step"))["s"]
        silent = int((now - seen).total_seconds())
        alert = alert_raise(run=run, kind=AlertKind.STALE, step=last, row=row,
                            key=f"a{run.attempt}-s{last if last is not None else 'none'}",
                            message=f"no report for {silent // 60} min {silent % 60} s (last step {last if last is not None else '—'})")
        if alert:
            raised.append(alert)
    _requeue_lost(now)
    return raised


def _requeue_lost(now) -> None:
    """Deliveries whose task never ran (a broker lost it) or died holding the claim."""
    waited = timedelta(seconds=max(BACKOFF_S) + 300)
    lost = Delivery.objects.filter(
        Q(status=Delivery.Status.PENDING, claimed_at__isnull=True, created_at__lt=now - timedelta(seconds=300))
        | Q(status=Delivery.Status.PENDING, claimed_at__lt=now - waited)
        | Q(status=Delivery.Status.SENDING, claimed_at__lt=now - timedelta(seconds=CLAIM_TIMEOUT_S)))
    ids = list(lost.values_list("id", flat=True)[:500])
    if ids:
        transaction.on_commit(lambda: _enqueue(ids))


def stage_alert(*, run: Run, failed_detail: str, crashed: bool, attempt: int, step: int | None) -> Alert | None:
    """A pipeline stage's attempt ended failed (attempts.py): `crashed` (the trainer crashed, the
    worker was lost) or `stage_failed` (stopped, bad spec), once per attempt."""
    kind = AlertKind.CRASHED if crashed else AlertKind.STAGE_FAILED
    return alert_raise(run=run, kind=kind, step=step, key=f"attempt-{attempt}", message=f"stage attempt {attempt}: {failed_detail}")
