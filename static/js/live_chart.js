// Live training curves: plotly panels for one run (or several, compared), fed first by the JSON
// the page embeds (json_script) and then by the run's WebSocket, appended with Plotly.extendTraces.
// A closed socket reconnects and back-fills what it missed over HTTP. Zooming fetches finer data.
// Everything user-provided (run names, keys, comments) reaches plotly escaped; no innerHTML.
(function () {
  "use strict";

  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const rolloutUrl = (runId, step) => `/rollouts/runs/${runId}/steps/${step}/`;
  const dataUrl = (runId) => `/metrics/runs/${runId}/data.json`;
  const csvUrl = (runId, keys) => `/metrics/runs/${runId}/points.csv?keys=${encodeURIComponent(keys.join(","))}`;
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const DRAWN_MAX = 20000;
  // Wall-clock ms with sub-ms precision (comparable with the server's and a benchmark's clock).
  const now = () => performance.timeOrigin + performance.now();
  window.__r1lab_drawn = window.__r1lab_drawn || [];

  // --- permalink state -------------------------------------------------------------------------
  function readState() {
    const p = new URLSearchParams(location.search);
    const range = (p.get("range") || "").split(",").map(Number);
    return {
      smooth: Math.min(0.99, Math.max(0, parseFloat(p.get("smooth") || "0") || 0)),
      x: p.get("x") === "time" ? "time" : "step",
      logy: p.get("logy") === "1",
      range: range.length === 2 && range.every(Number.isFinite) ? range : null,
    };
  }
  function writeState(state) {
    const p = new URLSearchParams(location.search);
    const set = (k, v) => (v === null || v === "" || v === undefined ? p.delete(k) : p.set(k, v));
    set("smooth", state.smooth ? String(state.smooth) : null);
    set("x", state.x === "time" ? "time" : null);
    set("logy", state.logy ? "1" : null);
    set("range", state.range ? state.range.map((v) => Math.round(v)).join(",") : null);
    const qs = p.toString();
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : "") + location.hash);
  }

  // --- math ------------------------------------------------------------------------------------
  function emaFrom(prev, ys, w) {
    // TensorBoard-style debiased EMA; `prev` = {acc, n} carries it across live appends.
    const out = new Array(ys.length);
    let acc = prev.acc, n = prev.n;
    for (let i = 0; i < ys.length; i++) {
      acc = acc * w + (1 - w) * ys[i];
      n += 1;
      out[i] = w > 0 ? acc / (1 - Math.pow(w, n)) : ys[i];
    }
    prev.acc = acc; prev.n = n;
    return out;
  }
  function lastAtOrBefore(xs, ys, step) {
    let lo = 0, hi = xs.length - 1, ans = -1;
    while (lo <= hi) { const m = (lo + hi) >> 1; if (xs[m] <= step) { ans = m; lo = m + 1; } else hi = m - 1; }
    return ans < 0 ? null : ys[ans];
  }

  // --- one chart group (a run page, or a compare page) --------------------------------------------
  function Charts(root, cfg) {
    window.__r1lab_start = window.__r1lab_start || performance.now(); // the page's HTML, data and plotly are in
    this.root = root;
    this.cfg = cfg;
    this.state = readState();
    this.lines = {}; // "run|key" -> {runId, key, x, y, t, total, downsampled}
    this.panels = [];
    this.comments = cfg.comments || [];
    this.runs = cfg.mode === "compare" ? cfg.runs : [{ id: cfg.run.id, name: cfg.run.name, color: "#2f5bd3", series: cfg.series }];
    for (const run of this.runs) {
      for (const [key, w] of Object.entries(run.series || {})) this.addLine(run.id, key, w);
    }
    this.lastSeen = {};
    this.buildToolbar();
    this.buildPanels();
    this.firstPaint().then(() => { window.__r1lab_ready = performance.now(); root.dataset.ready = "1"; });
    for (const run of this.runs) this.connect(run.id, true);
    if (cfg.mode === "run") this.watchStale();
  }

  Charts.prototype.addLine = function (runId, key, w) {
    const id = runId + "|" + key;
    this.lines[id] = { id, runId, key, x: w.x.slice(), y: w.y.slice(), t: w.t.slice(), total: w.total, downsampled: w.downsampled };
    return this.lines[id];
  };

  Charts.prototype.buildToolbar = function () {
    const bar = this.root.querySelector(".chart-toolbar");
    if (!bar) return;
    const s = this.state;
    const slider = bar.querySelector("[data-smooth]");
    const label = bar.querySelector("[data-smooth-value]");
    const logy = bar.querySelector("[data-logy]");
    const xsel = bar.querySelector("[data-xaxis]");
    const link = bar.querySelector("[data-permalink]");
    if (slider) {
      slider.value = s.smooth; if (label) label.textContent = s.smooth.toFixed(2);
      slider.addEventListener("input", () => {
        s.smooth = parseFloat(slider.value); if (label) label.textContent = s.smooth.toFixed(2);
        writeState(s); this.renderAll();
      });
    }
    if (logy) { logy.checked = s.logy; logy.addEventListener("change", () => { s.logy = logy.checked; writeState(s); this.renderAll(); }); }
    if (xsel) { xsel.value = s.x; xsel.addEventListener("change", () => { s.x = xsel.value; s.range = null; writeState(s); this.panels.forEach((p) => (p.zoom = null)); this.renderAll(); }); }
    if (link) {
      link.addEventListener("click", (ev) => {
        ev.preventDefault();
        writeState(s);
        const url = location.href;
        if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
        link.textContent = "Link copied";
        link.setAttribute("href", url);
        setTimeout(() => (link.textContent = "Permalink"), 2000);
      });
    }
    const reset = bar.querySelector("[data-reset-zoom]");
    if (reset) reset.addEventListener("click", () => { s.range = null; writeState(s); this.panels.forEach((p) => (p.zoom = null)); this.renderAll(); });
  };

  // Panel specs: run mode uses the server's resolved panels; compare mode one panel per metric.
  Charts.prototype.buildPanels = function () {
    const grid = this.root.querySelector(".chart-grid");
    const specs = this.cfg.mode === "compare"
      ? this.cfg.metrics.map((k) => ({ id: "m-" + k, title: k, traces: [{ key: k, name: k, keys: [k] }] }))
      : this.cfg.panels;
    for (const spec of specs) this.addPanel(grid, spec);
  };

  Charts.prototype.addPanel = function (grid, spec) {
    const card = document.createElement("section");
    card.className = "chart-card" + (spec.extra ? " extra" : "");
    card.dataset.panel = spec.id;
    const head = document.createElement("div");
    head.className = "chart-head";
    const h = document.createElement("h3"); h.textContent = spec.title;
    const info = document.createElement("span"); info.className = "chart-info muted";
    const csv = document.createElement("a"); csv.className = "chart-csv"; csv.textContent = "CSV";
    head.append(h, info, csv);
    const plot = document.createElement("div"); plot.className = "chart-plot";
    card.append(head, plot);
    grid.appendChild(card);
    const panel = { spec, card, plot, info, csv, zoom: null, traceMeta: [], rendered: false, visible: true };
    this.panels.push(panel);
    if (window.IntersectionObserver) {
      // Live points are drawn only into panels on screen; a panel scrolled to draws its backlog.
      this._observer = this._observer || new IntersectionObserver((entries) => {
        for (const e of entries) {
          const p = this.panels.find((x) => x.card === e.target);
          if (!p) continue;
          p.visible = e.isIntersecting;
          if (p.visible && p.backlog) { const b = p.backlog; p.backlog = null; this.draw(b, [p], now()); }
        }
      });
      this._observer.observe(card);
    }
    return panel;
  };

  Charts.prototype.panelLines = function (panel) {
    // [{line, spec}] for every run × trace key that has data
    const out = [];
    for (const run of this.runs) {
      for (const t of panel.spec.traces) {
        const line = this.lines[run.id + "|" + t.key];
        if (line) out.push({ line, trace: t, run, band: t.band ? this.lines[run.id + "|" + t.band] : null });
      }
    }
    return out;
  };

  Charts.prototype.xOf = function (line, xs, ts) {
    return this.state.x === "time" ? ts.map((v) => new Date(v * 1000)) : xs.slice();
  };

  Charts.prototype.traces = function (panel) {
    const s = this.state;
    const compare = this.cfg.mode === "compare";
    const data = [];
    panel.traceMeta = [];
    let palette = 0;
    const colors = ["#2f5bd3", "#d9480f", "#2b8a3e", "#ae3ec9", "#1098ad", "#e67700", "#5f3dc4", "#c92a2a"];
    for (const { line, trace, run, band } of this.panelLines(panel)) {
      const w = panel.zoom && panel.zoom[line.id] ? panel.zoom[line.id] : line;
      const color = compare ? run.color : colors[palette++ % colors.length];
      const name = esc(compare ? run.name : trace.name || trace.key);
      const xs = this.xOf(line, w.x, w.t);
      const axis = trace.y2 ? "y2" : "y";
      if (band && !panel.zoom) {
        const upper = [], lower = [];
        for (let i = 0; i < w.x.length; i++) {
          const sd = lastAtOrBefore(band.x, band.y, w.x[i]) || 0;
          upper.push(w.y[i] + sd); lower.push(w.y[i] - sd);
        }
        data.push({ x: xs, y: upper, mode: "lines", line: { width: 0, color }, hoverinfo: "skip", showlegend: false, yaxis: axis, type: "scatter" });
        panel.traceMeta.push({ line, role: "upper", band });
        data.push({ x: xs.slice(), y: lower, mode: "lines", line: { width: 0, color }, fill: "tonexty", fillcolor: color + "22", hoverinfo: "skip", showlegend: false, yaxis: axis, type: "scatter" });
        panel.traceMeta.push({ line, role: "lower", band });
      }
      const smoothing = s.smooth > 0;
      data.push({
        x: xs, y: w.y.slice(), name, type: "scatter", mode: w.x.length < 3 ? "lines+markers" : "lines", yaxis: axis,
        line: { color, width: smoothing ? 1 : 1.6, dash: trace.dash ? "dot" : "solid" }, opacity: smoothing ? 0.25 : 1,
        showlegend: !smoothing, legendgroup: line.id,
        hovertemplate: (s.x === "time" ? "%{x}" : "step %{x}") + "<br>%{y}<extra>" + name + "</extra>",
      });
      panel.traceMeta.push({ line, role: "raw" });
      const prev = { acc: 0, n: 0 };
      data.push({
        x: xs.slice(), y: smoothing ? emaFrom(prev, w.y, s.smooth) : [], name: name + (smoothing ? " (smoothed)" : ""),
        type: "scatter", mode: "lines", yaxis: axis, line: { color, width: 2, dash: trace.dash ? "dot" : "solid" },
        visible: smoothing, showlegend: smoothing, legendgroup: line.id,
        hovertemplate: "smoothed %{y:.6g}<extra>" + name + "</extra>",
      });
      panel.traceMeta.push({ line, role: "smooth", ema: prev });
    }
    return data;
  };

  Charts.prototype.stepToX = function (step) {
    if (this.state.x !== "time") return step;
    for (const line of Object.values(this.lines)) {
      const t = lastAtOrBefore(line.x, line.t, step);
      if (t !== null) return new Date(t * 1000);
    }
    return null;
  };

  Charts.prototype.layout = function (panel) {
    const s = this.state;
    const shapes = [], annotations = [];
    for (const c of this.comments) {
      const x = this.stepToX(c.step);
      if (x === null) continue;
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color: "#868e96", width: 1, dash: "dot" } });
      annotations.push({ x, xref: "x", yref: "paper", y: 1, yanchor: "bottom", text: "✎", showarrow: false,
        hovertext: esc(`step ${c.step} · ${c.author}: ${c.body}`).slice(0, 400), font: { size: 11, color: "#495057" } });
    }
    const aha = this.cfg.aha;
    if (aha && panel.spec.aha) {
      const x = this.stepToX(aha.step);
      if (x !== null) {
        shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color: "#e67700", width: 2, dash: "dash" } });
        annotations.push({ x, xref: "x", yref: "paper", y: 0.95, text: "aha @ " + aha.step, showarrow: false, captureevents: true,
          bgcolor: "#fff4e0", font: { size: 11, color: "#a86500" }, hovertext: esc(`level ${aha.before.toFixed(3)} → ${aha.after.toFixed(3)} (${aha.method}); click for rollouts`) });
      }
    }
    const hasY2 = panel.spec.traces.some((t) => t.y2);
    const layout = {
      margin: { l: 48, r: hasY2 ? 48 : 12, t: 14, b: 30 }, height: 260, hovermode: "closest",
      xaxis: { type: s.x === "time" ? "date" : "linear", zeroline: false },
      yaxis: { type: s.logy ? "log" : "linear", zeroline: false, automargin: true },
      legend: { orientation: "h", y: -0.18, font: { size: 11 } }, showlegend: true, shapes, annotations,
      uirevision: s.x + (s.logy ? "log" : "lin"),
    };
    if (hasY2) layout.yaxis2 = { overlaying: "y", side: "right", zeroline: false, showgrid: false };
    if (s.range && s.x === "step") { layout.xaxis.range = s.range.slice(); layout.xaxis.autorange = false; }
    return layout;
  };

  Charts.prototype.updateInfo = function (panel) {
    const pairs = this.panelLines(panel);
    if (!pairs.length) { panel.info.textContent = "no data yet"; panel.csv.removeAttribute("href"); return; }
    let shown = 0, total = 0, down = false;
    for (const { line } of pairs) {
      const w = panel.zoom && panel.zoom[line.id] ? panel.zoom[line.id] : line;
      shown += w.x.length; total += w.total; down = down || w.downsampled;
    }
    panel.info.textContent = down ? `${fmt(shown)} of ${fmt(total)} points, min/max kept` : `${fmt(total)} points`;
    const byRun = pairs[0].run.id;
    panel.csv.href = csvUrl(byRun, [...new Set(pairs.filter((p) => p.run.id === byRun).flatMap((p) => [p.line.key, ...(p.band ? [p.band.key] : [])]))]);
  };

  Charts.prototype.renderPanel = function (panel) {
    panel.backlog = null; // a full render draws every point the lines hold
    const hasData = this.panelLines(panel).length > 0;
    panel.card.classList.toggle("empty", !hasData);
    this.updateInfo(panel);
    const p = Plotly.react(panel.plot, this.traces(panel), this.layout(panel), { displaylogo: false, responsive: true });
    if (!panel.rendered) {
      panel.rendered = true;
      panel.plot.on("plotly_click", (ev) => this.onClick(panel, ev));
      panel.plot.on("plotly_clickannotation", (ev) => {
        if (this.cfg.aha && String(ev.annotation.text).startsWith("aha")) location.href = rolloutUrl(this.runs[0].id, this.cfg.aha.step) + "?reflection=1";
      });
      panel.plot.on("plotly_relayout", (ev) => this.onRelayout(panel, ev));
    }
    return p;
  };

  // First paint: the panels on the first screen in one go (window.__r1lab_first_screen), then the
  // ones below it one per task, so the page answers input and live messages in between
  // (window.__r1lab_ready and data-ready="1" once every panel is drawn).
  Charts.prototype.firstPaint = function () {
    const h = window.innerHeight || document.documentElement.clientHeight;
    const onScreen = (p) => { const r = p.card.getBoundingClientRect(); return r.bottom > 0 && r.top < h; };
    const first = this.panels.filter(onScreen);
    const rest = this.panels.filter((p) => !first.includes(p));
    const yieldTask = () => new Promise((resolve) => setTimeout(resolve, 0));
    return Promise.all(first.map((p) => this.renderPanel(p))).then(() => {
      window.__r1lab_first_screen = performance.now();
      window.__r1lab_first_screen_panels = first.length;
      return rest.reduce((chain, p) => chain.then(yieldTask).then(() => (p.rendered ? null : this.renderPanel(p))), Promise.resolve());
    });
  };

  Charts.prototype.renderAll = function () {
    return Promise.all(this.panels.map((p) => this.renderPanel(p)));
  };

  Charts.prototype.onClick = function (panel, ev) {
    const pt = ev.points && ev.points[0];
    if (!pt) return;
    const meta = panel.traceMeta[pt.curveNumber];
    if (!meta) return;
    const w = panel.zoom && panel.zoom[meta.line.id] ? panel.zoom[meta.line.id] : meta.line;
    const step = w.x[pt.pointIndex];
    if (step === undefined) return;
    location.href = rolloutUrl(meta.line.runId, step);
  };

  Charts.prototype.onRelayout = function (panel, ev) {
    if (this._relayoutBusy) return;
    if (ev["xaxis.autorange"]) { if (panel.zoom) { panel.zoom = null; this.state.range = null; writeState(this.state); this.renderPanel(panel); } return; }
    const a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
    if (a === undefined || b === undefined || this.state.x !== "step") return;
    this.state.range = [a, b];
    writeState(this.state);
    this.zoomPanel(panel, Math.floor(a), Math.ceil(b));
  };

  Charts.prototype.zoomPanel = function (panel, lo, hi) {
    const pairs = this.panelLines(panel).filter(({ line }) => line.downsampled);
    if (!pairs.length) return Promise.resolve();
    const byRun = {};
    for (const { line } of pairs) (byRun[line.runId] = byRun[line.runId] || []).push(line.key);
    const zoom = {};
    return Promise.all(Object.entries(byRun).map(([runId, keys]) =>
      fetch(`${dataUrl(runId)}?keys=${encodeURIComponent(keys.join(","))}&min_step=${lo}&max_step=${hi}&max_points=2000`, { credentials: "same-origin" })
        .then((r) => r.json()).then((d) => { for (const [k, w] of Object.entries(d.series || {})) zoom[runId + "|" + k] = w; })
    )).then(() => {
      panel.zoom = zoom;
      this._relayoutBusy = true;
      return this.renderPanel(panel).finally(() => (this._relayoutBusy = false));
    });
  };

  // --- live ------------------------------------------------------------------------------------
  Charts.prototype.connect = function (runId, first) {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/metrics/runs/${runId}/`);
    const indicator = this.root.querySelector("[data-live]");
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (indicator) indicator.textContent = "● live";
      if (!first) this.backfill(runId);
    };
    ws.onmessage = (ev) => { this._recvAt = now(); this.onMessage(runId, JSON.parse(ev.data)); };
    ws.onclose = () => {
      if (indicator) indicator.textContent = "○ reconnecting";
      const delay = opened ? 500 : Math.min(10000, (this._delay = (this._delay || 500) * 2));
      if (opened) this._delay = 500;
      setTimeout(() => this.connect(runId, false), delay);
    };
    this.sockets = this.sockets || {};
    this.sockets[runId] = ws;
  };

  Charts.prototype.backfill = function (runId) {
    // Re-read everything after the oldest last step we hold, then append what is new per key.
    const mine = Object.values(this.lines).filter((l) => l.runId === runId);
    const after = mine.length ? Math.min(...mine.map((l) => (l.x.length ? l.x[l.x.length - 1] : -1))) + 1 : 0;
    return fetch(`${dataUrl(runId)}?min_step=${after}&max_points=20000`, { credentials: "same-origin" })
      .then((r) => r.json())
      .then((d) => {
        const points = {};
        for (const [key, w] of Object.entries(d.series || {})) points[key] = w.x.map((x, i) => [x, w.y[i], w.t[i]]);
        this.appendPoints(runId, points);
      });
  };

  Charts.prototype.onMessage = function (runId, msg) {
    if (msg.type === "metrics.points") {
      this.lastSeen[runId] = Date.now();
      this.setStatusFromLive();
      if (msg.backfill) this.backfill(runId);
      else this.appendPoints(runId, msg.points || {});
    } else if (msg.type === "run.status") {
      this.status = msg.run;
      if (msg.run.last_seen_at) this.lastSeen[runId] = Date.parse(msg.run.last_seen_at);
      this.showStatus();
    } else if (msg.type === "comment.added") {
      this.comments.push(msg.comment);
      this.addCommentToList(msg.comment);
      this.panels.forEach((p) => p.rendered && Plotly.relayout(p.plot, { shapes: this.layout(p).shapes, annotations: this.layout(p).annotations }));
    }
  };

  Charts.prototype.appendPoints = function (runId, points) {
    // Phase 1: new points into the lines (a brand-new key makes a line, and maybe a panel).
    const fresh = {};
    let newKeys = false;
    for (const [key, pts] of Object.entries(points)) {
      let line = this.lines[runId + "|" + key];
      if (!line) { line = this.addLine(runId, key, { x: [], y: [], t: [], total: 0, downsampled: false }); newKeys = true; }
      const last = line.x.length ? line.x[line.x.length - 1] : -1;
      const add = pts.filter((p) => p[0] > last).sort((a, b) => a[0] - b[0]);
      if (!add.length) continue;
      for (const p of add) { line.x.push(p[0]); line.y.push(p[1]); line.t.push(p[2]); }
      line.total += add.length;
      fresh[line.id] = add;
    }
    if (newKeys && this.cfg.mode === "run") this.ensurePanelsFor(runId);
    // Phase 2, once per animation frame: messages that arrive faster than the browser draws are
    // merged into one extendTraces per panel instead of queueing a redraw each. A hidden tab gets
    // no animation frames (and 1 Hz timers at best), so there the flush runs as a task right away:
    // the charts are up to date when the user comes back.
    const pending = (this._fresh = this._fresh || {});
    const recv = this._recvAt || now();
    this._recvAt = null;
    for (const [id, add] of Object.entries(fresh)) {
      for (const p of add) p.recv = recv;
      (pending[id] = pending[id] || []).push(...add);
    }
    if (Object.keys(fresh).length) this.scheduleFlush();
  };

  Charts.prototype.scheduleFlush = function () {
    if (this._flushQueued) return;
    this._flushQueued = true;
    const flush = () => {
      if (!this._flushQueued) return; // already flushed by the other path
      this._flushQueued = false;
      const f = this._fresh; this._fresh = {};
      this.draw(f, null, now());
    };
    if (document.hidden) setTimeout(flush, 0);
    else requestAnimationFrame(flush);
    if (!this._onVisibility) {
      // A tab hidden while a frame is pending would never get that frame: flush as a task instead.
      this._onVisibility = () => { if (document.hidden && this._flushQueued) setTimeout(flush, 0); };
      document.addEventListener("visibilitychange", this._onVisibility);
    }
  };

  Charts.prototype.draw = function (fresh, only, frameAt) {
    const drawnAt = [];
    const drawnLines = new Set();
    for (const panel of only || this.panels) {
      const touched = panel.traceMeta.some((m) => fresh[m.line.id] || (m.band && fresh[m.band.id]));
      const needsFull = !panel.rendered || panel.traceMeta.length !== this.expectedTraceCount(panel);
      if (!touched && !needsFull) continue;
      if (panel.visible === false) {
        // Off screen: keep the points and draw them when the panel scrolls into view.
        const backlog = (panel.backlog = panel.backlog || {});
        for (const [id, add] of Object.entries(fresh)) (backlog[id] = backlog[id] || []).push(...add);
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
      const raws = [];
      for (const m of panel.traceMeta) {
        if (m.role !== "raw" || !fresh[m.line.id] || drawnLines.has(m.line.id)) continue;
        drawnLines.add(m.line.id); raws.push(m);
      }
      drawnAt.push(Promise.resolve(Plotly.extendTraces(panel.plot, upd, idx)).then(() => {
        // Resolved: plotly's graph data and SVG hold the new points (window.__r1lab_drawn is what
        // the live-latency benchmark reads; the first panel that draws a line counts for it).
        const at = now();
        const hidden = document.hidden;
        const rec = [];
        for (const m of raws) {
          const gx = panel.plot.data[panel.traceMeta.indexOf(m)].x;
          for (const p of fresh[m.line.id]) {
            const inData = this.state.x !== "step" || gx.lastIndexOf(p[0]) >= 0;
            const e = { line: m.line.id, step: p[0], value: p[1], recv: p.recv, frame: frameAt, at, hidden, inData };
            rec.push(e); window.__r1lab_drawn.push(e);
          }
        }
        // …and the frame that puts them on screen (none comes while the tab is hidden).
        if (!hidden && rec.length) requestAnimationFrame(() => { const t = now(); for (const e of rec) e.painted = t; });
      }));
      this.updateInfo(panel);
    }
    if (window.__r1lab_drawn.length > DRAWN_MAX) window.__r1lab_drawn.splice(0, window.__r1lab_drawn.length - DRAWN_MAX);
    return Promise.all(drawnAt);
  };

  Charts.prototype.expectedTraceCount = function (panel) {
    let n = 0;
    for (const { band } of this.panelLines(panel)) n += band && !panel.zoom ? 4 : 2;
    return n;
  };

  Charts.prototype.ensurePanelsFor = function (runId) {
    // Keys that no panel claims get their own panel (as the server does on first paint).
    const claimed = new Set();
    for (const p of this.panels) for (const t of p.spec.traces) { claimed.add(t.key); if (t.band) claimed.add(t.band); }
    const grid = this.root.querySelector(".chart-grid");
    for (const line of Object.values(this.lines)) {
      if (line.runId !== runId || claimed.has(line.key)) continue;
      const spec = this.specFor(line.key);
      if (spec) spec.traces.push({ key: line.key, name: line.key, keys: [line.key], dash: true });
      else this.addPanel(grid, { id: "k-" + line.key, title: line.key, traces: [{ key: line.key, name: line.key, keys: [line.key] }], extra: true });
      claimed.add(line.key);
    }
  };

  Charts.prototype.specFor = function (key) {
    // prefix families the server knows: rewards/*/mean → reward panel, clip_ratio* → clip, eval/* → eval
    const rules = [["reward", (k) => k.startsWith("rewards/") && k.endsWith("/mean")], ["clip", (k) => k.startsWith("clip_ratio")], ["eval", (k) => k.startsWith("eval/")]];
    for (const [id, test] of rules) {
      if (test(key)) { const p = this.panels.find((x) => x.spec.id === id); if (p) return p.spec; }
    }
    return null;
  };

  // --- status & comments -----------------------------------------------------------------------
  Charts.prototype.showStatus = function () {
    const badge = this.root.querySelector("[data-run-status]") || document.querySelector("[data-run-status]");
    if (!badge || !this.status) return;
    let status = this.status.status;
    const seen = this.lastSeen[this.runs[0].id];
    if ((status === "running" || status === "stale") && seen) {
      status = Date.now() - seen > this.cfg.stale_after_s * 1000 ? "stale" : "running";
    }
    badge.textContent = status;
    badge.className = "badge status-" + status;
  };
  Charts.prototype.setStatusFromLive = function () { if (this.status) this.showStatus(); };
  Charts.prototype.watchStale = function () {
    const seen = this.cfg.run.last_seen_at;
    if (seen) this.lastSeen[this.runs[0].id] = Date.parse(seen);
    this.status = { status: this.cfg.run.status };
    setInterval(() => this.showStatus(), 5000);
  };

  Charts.prototype.addCommentToList = function (c) {
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
  };

  function mountAll() {
    document.querySelectorAll("[data-r1-charts]").forEach((root) => {
      if (root.__charts) return;
      const cfg = JSON.parse(document.getElementById(root.dataset.config).textContent);
      root.__charts = new Charts(root, cfg);
    });
  }
  window.R1Charts = { mountAll, emaFrom };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
