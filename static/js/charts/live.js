// The charts, live: the run's socket (socket.js: reconnect, back-fill over HTTP after a gap), its
// messages, and how a live point reaches the screen: at once as the panel's live tail
// (live_tail.js), folded into the plotly trace by one Plotly.extendTraces per panel SYNC_MS later
// when the page idles. A point outside the drawn axes redraws its panel at once instead.
// `liveMethods` are methods of Charts (live_chart.js).
import { liveSocket } from "../socket.js";
import { chunks, dataUrl, emaFrom, keysUrl, lastAtOrBefore, LOAD_CHUNK, now } from "./state.js";
import { hook, hooked } from "./hooks.js";

// A plotly redraw of one panel costs 6-20 ms whatever it adds; a tail segment costs microseconds.
const SYNC_MS = 2000;

// Benchmark records (hook "drawn"): when the point reached plotly's graph data.
function markInData(panel, recs) {
  if (!recs.length) return;
  const at = now();
  for (const e of recs) {
    const gx = (panel.plot.data[e.trace] || {}).x || [];
    e.inDataAt = at;
    e.inData = gx.lastIndexOf(e.step) >= 0;
  }
}

export const liveMethods = {
  // `first`: the page's first socket (a later one, or first === false, back-fills when it opens).
  // this.sockets[runId] is the run's current WebSocket.
  connect(runId, first) {
    this.sockets = this.sockets || {};
    liveSocket(`/ws/metrics/runs/${runId}/`, {
      reconnecting: !first,
      indicator: this.root.querySelector("[data-live]"),
      onSocket: (ws) => { this.sockets[runId] = ws; },
      onReconnect: () => this.backfill(runId),
      onMessage: (msg) => { this._recvAt = now(); this.onMessage(runId, msg); },
    });
  },

  backfill(runId) {
    // Re-read the series this page holds after the oldest last step among them, and append what
    // is new per key; a run page also asks for the run's keys (keys.json) and places the new
    // ones: in a group (listed), or in a first-screen panel (fetched whole).
    const mine = Object.values(this.lines).filter((l) => l.runId === runId);
    const after = mine.length ? Math.min(...mine.map((l) => (l.x.length ? l.x[l.x.length - 1] : -1))) + 1 : 0;
    const keys = this.cfg.mode === "compare" ? this.cfg.metrics : mine.map((l) => l.key);
    const reads = chunks(keys, LOAD_CHUNK).map((part) =>
      fetch(`${dataUrl(runId)}?keys=${encodeURIComponent(part.join(","))}&min_step=${after}&max_points=20000`, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((d) => {
          const points = {};
          for (const [key, w] of Object.entries(d.series || {})) points[key] = w.x.map((x, i) => [x, w.y[i], w.t[i]]);
          this.appendPoints(runId, points);
        }));
    if (this.cfg.mode === "run") {
      reads.push(fetch(keysUrl(runId), { credentials: "same-origin" }).then((r) => r.json()).then((d) => {
        this.addKeys(runId, d.keys || []);
        const missing = (d.keys || []).filter((k) => this.eagerKeys.has(k) && !this.lines[runId + "|" + k]);
        if (!missing.length) return null;
        return this.loadKeys(runId, missing).then(() => {
          const panels = new Set(missing.flatMap((k) => this.byKey.get(k) || []));
          return this.draw({}, [...panels], now());
        });
      }));
    }
    return Promise.all(reads);
  },

  onMessage(runId, msg) {
    if (msg.type === "metrics.points") {
      this.lastSeen[runId] = Date.now();
      this.setStatusFromLive();
      this.scheduleSignals();
      if (msg.backfill) this.backfill(runId);
      else this.appendPoints(runId, msg.points || {});
    } else if (msg.type === "run.status") {
      this.status = msg.run;
      if (msg.run.last_seen_at) this.lastSeen[runId] = Date.parse(msg.run.last_seen_at);
      this.showStatus();
    } else if (msg.type === "run.rewound") {
      this.rewound(runId, msg.after_step);
    } else if (msg.type === "comment.added") {
      this.commentAdded(msg.comment);
    }
  },

  appendPoints(runId, points) {
    // Phase 1: new points into the lines. A key that was not on the page is placed first (a
    // first-screen panel's trace, or listed in a group). A key without a line is one whose panel
    // is not loaded: its points are dropped (the fetch reads them), or kept while it is in flight.
    // A first-screen key without a line is a new series: these points are all it has.
    // A step of a wide run brings ~3,000 keys: a key the page does not keep costs two set lookups.
    const fresh = {};
    if (this.cfg.mode === "run") {
      let unknown = null;
      for (const key in points) if (!this.eagerKeys.has(key) && !this.groupOf.has(key)) (unknown = unknown || []).push(key);
      if (unknown) this.addKeys(runId, unknown);
    }
    for (const key in points) {
      if (!this.wanted.has(key)) continue;
      const pts = points[key];
      const id = runId + "|" + key;
      let line = this.lines[id];
      if (!line) {
        const buf = this.inflight.get(id);
        if (buf) { buf.push(...pts); continue; }
        if (!this.eagerKeys.has(key)) continue;
        line = this.addLine(runId, key, { x: [], y: [], t: [], total: 0, downsampled: false });
      }
      const last = line.x.length ? line.x[line.x.length - 1] : -1;
      const add = pts.filter((p) => p[0] > last).sort((a, b) => a[0] - b[0]);
      if (!add.length) continue;
      for (const p of add) { line.x.push(p[0]); line.y.push(p[1]); line.t.push(p[2]); }
      line.total += add.length;
      fresh[line.id] = add;
    }
    // Phase 2, drawn right away: a live point costs a tail segment (microseconds), so there is
    // nothing to gain from waiting for an animation frame (which a busy renderer hands out late,
    // and a hidden tab not at all); the plotly redraws that cost are batched by scheduleSync.
    const recv = this._recvAt || now();
    this._recvAt = null;
    for (const add of Object.values(fresh)) for (const p of add) p.recv = recv;
    if (Object.keys(fresh).length) this.draw(fresh, null, now());
  },

  draw(fresh, only, frameAt) {
    const drawnAt = [];
    const drawnLines = new Set();
    const recording = hooked("drawn");
    for (const panel of only || this.panelsOf(fresh)) {
      if (!panel.loaded) continue; // its fetch reads these points
      const needsFull = !panel.rendered || panel.traceMeta.length !== this.expectedTraceCount(panel);
      if (panel.visible === false || panel.card.hidden) {
        // Off screen: the lines hold the points; the panel is redrawn when it scrolls into view.
        panel.dirty = true;
        continue;
      }
      if (panel.zoom) { this.updateInfo(panel); continue; } // a zoomed view stays put; autorange brings it back
      if (needsFull) { drawnAt.push(this.renderPanel(panel)); continue; }
      const upd = { x: [], y: [] }, idx = [];
      panel.traceMeta.forEach((m, i) => {
        const add = fresh[m.line.id];
        if (!add) return;
        const xs = this.xOf(m.line, add.map((p) => p[0]), add.map((p) => p[2]));
        const ys = add.map((p) => p[1]);
        let y = ys;
        if (m.role === "smooth") y = this.state.smooth > 0 ? emaFrom(m.ema, ys, this.state.smooth) : [];
        else if (m.role === "upper" || m.role === "lower") {
          const sign = m.role === "upper" ? 1 : -1;
          y = add.map((p) => p[1] + sign * (lastAtOrBefore(m.band.x, m.band.y, p[0]) || 0));
        }
        if (m.role === "smooth" && !(this.state.smooth > 0)) return;
        upd.x.push(xs); upd.y.push(y); idx.push(i);
      });
      if (!idx.length) { this.updateInfo(panel); continue; }
      // With a "drawn" hook (the live-latency benchmark), the first panel that draws a line
      // records its points: when drawn on screen, and when in plotly's graph data.
      const rec = [];
      if (recording) {
        panel.traceMeta.forEach((m, i) => {
          if (m.role !== "raw" || !fresh[m.line.id] || drawnLines.has(m.line.id)) return;
          drawnLines.add(m.line.id);
          for (const p of fresh[m.line.id]) rec.push({ line: m.line.id, trace: i, step: p[0], value: p[1], recv: p.recv, frame: frameAt, hidden: document.hidden });
        });
      }
      const fits = this.state.x === "step" && panel.tail.fits(idx, upd);
      const pend = (panel.pending = panel.pending || {});
      idx.forEach((i, k) => {
        const q = (pend[i] = pend[i] || { x: [], y: [] });
        q.x.push(...upd.x[k]); q.y.push(...upd.y[k]);
      });
      panel.pendingRecs.push(...rec);
      let done;
      if (fits) {
        idx.forEach((i, k) => panel.tail.draw(i, upd.x[k], upd.y[k]));
        this.scheduleSync(panel);
        done = Promise.resolve("tail");
      } else {
        // Outside the drawn axes: redraw the panel now with axes that hold it (the lines hold every
        // point; extendTraces would keep the fixed range of a live panel and draw it off-chart).
        done = (this.panelRangeFixed(panel) ? this.renderPanel(panel) : this.sync(panel)).then(() => "plotly");
      }
      if (rec.length) {
        drawnAt.push(done.then((via) => {
          const at = now();
          for (const e of rec) { e.at = at; e.via = via; hook("drawn", e); }
          // …and the frame that puts them on screen (none comes while the tab is hidden).
          if (!document.hidden) requestAnimationFrame(() => { const t = now(); for (const e of rec) e.painted = t; });
        }));
      } else drawnAt.push(done);
      this.updateInfo(panel);
    }
    return Promise.all(drawnAt);
  },

  // The panels that draw the lines of `fresh` ({line id: points}), in page order.
  panelsOf(fresh) {
    const out = new Set();
    for (const id of Object.keys(fresh)) {
      const line = this.lines[id];
      for (const p of (line && this.byKey.get(line.key)) || []) out.add(p);
    }
    return [...out].sort((a, b) => a.index - b.index);
  },

  // A resumed attempt rewound the run: the steps after `after_step` are the new attempt's now.
  // The page drops what it holds after it and reads its series again (curve and lost history).
  rewound(runId, afterStep) {
    const held = Object.values(this.lines).filter((l) => l.runId === runId).map((l) => l.key);
    for (const k of held) { delete this.lines[runId + "|" + k]; delete this.lost[runId + "|" + k]; }
    return this.loadKeys(runId, held).then(() => { this.renderAll(); this.scheduleSignals(); });
  },

  // A panel with tail points is folded into plotly SYNC_MS after its first one, in an idle period
  // (each panel in its own idle callback, so frames go out between two redraws).
  scheduleSync(panel) {
    if (panel.syncTimer) return;
    panel.syncTimer = setTimeout(() => {
      const go = () => { if (panel.syncTimer) this.sync(panel); }; // else a full render folded it in
      if (window.requestIdleCallback && !document.hidden) requestIdleCallback(go, { timeout: SYNC_MS });
      else go();
    }, SYNC_MS);
  },

  // Fold the pending points into plotly's traces (one extendTraces for the panel).
  sync(panel) {
    clearTimeout(panel.syncTimer); panel.syncTimer = null;
    const pend = panel.pending, recs = panel.pendingRecs;
    if (pend && panel.rendered && this.nearRightEdge(panel)) return this.renderPanel(panel); // new headroom, now while idle
    panel.pending = null; panel.pendingRecs = [];
    if (!pend || !panel.rendered) return Promise.resolve();
    const idx = Object.keys(pend).map(Number);
    return Promise.resolve(Plotly.extendTraces(panel.plot, { x: idx.map((i) => pend[i].x), y: idx.map((i) => pend[i].y) }, idx))
      .then(() => this.markInData(panel, recs));
  },

  markInData(panel, recs) { markInData(panel, recs); },
};
