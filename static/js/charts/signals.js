// What a run page shows beside its curves: the aha moment and the alarms (badges, and the aha
// marker on its panel), the run's status badge (stale when it stops reporting), and the comments.
// The server computes the signals (change-point detection, alarm rules) and caches them 10 s per
// run; a page asks at most every SIGNALS_MS after new points, with jitter so 50 pages do not align.
// Text goes in with textContent (messages, comments and names are untrusted).
// `signalMethods` are methods of Charts (live_chart.js).
import { rolloutUrl, signalsUrl } from "./state.js";

const SIGNALS_MS = 10000;

export const signalMethods = {
  scheduleSignals() {
    if (this.cfg.mode !== "run" || this._signalsTimer) return;
    this._signalsTimer = setTimeout(() => {
      fetch(signalsUrl(this.runs[0].id), { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((d) => { if (d) this.showSignals(d); })
        .catch(() => {})
        .finally(() => (this._signalsTimer = null));
    }, (this.cfg.signals_ms || SIGNALS_MS) * (1 + Math.random() * 0.2));
  },

  showSignals(d) {
    const box = this.root.querySelector("[data-signals]");
    const runId = this.runs[0].id;
    const before = JSON.stringify(this.cfg.aha || null);
    this.cfg.aha = d.aha || null;
    this.cfg.alarms = d.alarms || [];
    if (box) {
      const badges = [];
      const badge = (cls, href, title, text) => {
        const a = document.createElement("a");
        a.className = cls; a.href = href; a.title = title; a.textContent = text;
        badges.push(a);
      };
      const aha = this.cfg.aha;
      if (aha) badge("badge aha", rolloutUrl(runId, aha.step) + "?reflection=1", aha.method,
        `aha moment @ step ${aha.step}: reflection ${aha.before.toFixed(2)} → ${aha.after.toFixed(2)}`);
      for (const a of this.cfg.alarms) badge("badge alarm alarm-" + a.kind, rolloutUrl(runId, a.step), a.message, `⚠ ${a.message} · step ${a.step}`);
      box.replaceChildren(...badges);
    }
    if (JSON.stringify(this.cfg.aha) !== before) this.relayoutMarks((p) => p.spec.aha);
  },

  // The comment and aha marks of the drawn panels (`which` of them) follow a change now; an off
  // screen panel when it comes back into view.
  relayoutMarks(which) {
    for (const p of this.panels) {
      if (!p.rendered || !which(p)) continue;
      if (p.visible === false || p.card.hidden) { p.dirty = true; continue; }
      const l = this.layout(p);
      Plotly.relayout(p.plot, { shapes: l.shapes, annotations: l.annotations });
    }
  },

  // --- status & comments ---------------------------------------------------------------------
  showStatus() {
    const badge = this.root.querySelector("[data-run-status]") || document.querySelector("[data-run-status]");
    if (!badge || !this.status) return;
    let status = this.status.status;
    const seen = this.lastSeen[this.runs[0].id];
    if ((status === "running" || status === "stale") && seen) {
      status = Date.now() - seen > this.cfg.stale_after_s * 1000 ? "stale" : "running";
    }
    badge.textContent = status;
    badge.className = "badge status-" + status;
  },

  setStatusFromLive() { if (this.status) this.showStatus(); },

  watchStale() {
    const seen = this.cfg.run.last_seen_at;
    if (seen) this.lastSeen[this.runs[0].id] = Date.parse(seen);
    this.status = { status: this.cfg.run.status };
    setInterval(() => this.showStatus(), 5000);
  },

  commentAdded(c) {
    this.comments.push(c);
    this.addCommentToList(c);
    this.relayoutMarks(() => true);
  },

  addCommentToList(c) {
    const list = document.querySelector("[data-comment-list]");
    if (!list) return;
    const li = document.createElement("li");
    const a = document.createElement("a"); a.href = rolloutUrl(this.runs[0].id, c.step); a.textContent = "step " + c.step;
    const who = document.createElement("span"); who.className = "muted"; who.textContent = ` · ${c.author} · ${new Date(c.created_at).toLocaleString()}`;
    const body = document.createElement("div"); body.className = "comment-body"; body.textContent = c.body;
    li.append(a, who, body);
    list.appendChild(li);
    const empty = document.querySelector("[data-comment-empty]");
    if (empty) empty.remove();
  },
};
