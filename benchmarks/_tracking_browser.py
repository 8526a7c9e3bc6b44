"""Browser helpers for the tracking benchmarks: a logged-in session cookie and Chromium."""
from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
# The page's benchmark hooks (static/js/charts/hooks.js), opted in before its modules run
# (context.add_init_script): what they report is kept in window.__bench, this script's own global.
# start: the first chart group starts; firstScreen/ready: performance.now() ms; drawn: one record
# per live point drawn (the page adds `painted` and `inDataAt` to it later); filterMs: the last
# filter pass.
HOOKS_INIT = """window.__bench = {drawn: []};
window.r1labHooks = {
  start(t) { if (window.__bench.start === undefined) window.__bench.start = t; },
  firstScreen(t, panels) { window.__bench.firstScreen = t; window.__bench.firstScreenPanels = panels; },
  ready(t) { window.__bench.ready = t; },
  drawn(rec) { const d = window.__bench.drawn; d.push(rec); if (d.length > 20000) d.splice(0, d.length - 20000); },
  filtered(ms) { window.__bench.filterMs = ms; },
};"""
READY = "window.__bench && window.__bench.ready !== undefined"

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]


def session_cookie(role: str = "viewer") -> tuple[object, str]:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tests.factories import UserFactory

    import secrets

    user = UserFactory(role=role, username=f"bench-{secrets.token_hex(6)}")
    s = SessionStore()
    s[SESSION_KEY], s[BACKEND_SESSION_KEY], s[HASH_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend", user.get_session_auth_hash()
    s.save()
    return user, s.session_key


def fill_run(run, n_steps: int, seed: int = 0) -> None:
    """Every metric the run page draws, n_steps steps, through the store's bulk path."""
    from _tracking_synth import run_batches

    from r1lab.tracking.ingest import ParsedLog
    from r1lab.tracking.services import tracked_run_log

    for body in run_batches(n_steps, seed=seed, steps_per_batch=500):
        p = ParsedLog()
        for m in body["metrics"]:
            p.keys.append(m["key"]); p.steps.append(m["step"]); p.values.append(m["value"]); p.tss.append(1.7e9 + m["step"])  # noqa: E702
        tracked_run_log(run_id=run.pk, parsed=p)
