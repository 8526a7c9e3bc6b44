// Live training curves: plotly panels for one run (or several, compared), fed first by the JSON
// the page embeds (json_script) and then by the run's WebSocket: a live point is drawn at once as a
// "live tail" over its panel and folded into the trace with Plotly.extendTraces when the page idles.
// A closed socket reconnects and back-fills what it missed over HTTP. Zooming fetches finer data.
// Everything user-provided (run names, keys, comments) reaches plotly escaped; no innerHTML.
//
// A run logs up to a few thousand keys. The page's JSON carries the data of the first screen's
// panels (panels.py) only; every other key is listed in a group by prefix ("train/", "system/", …,
// "other"), collapsed when there are many. A group's panel is a placeholder card until it
// scrolls into view (IntersectionObserver); then the visible panels' series are fetched from
// data.json, several in one request, and drawn. Live points of a key whose panel is not loaded
// are dropped (its fetch reads them from the server), or kept while its fetch is in flight; a
// loaded panel off screen only takes the points into its lines and is redrawn when it comes back
// into view. The filter box (?filter=, substring or glob) narrows the panels and the groups.
(function () {
  "use strict";

  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const rolloutUrl = (runId, step) => `/rollouts/runs/${runId}/steps/${step}/`;
  const dataUrl = (runId) => `/metrics/runs/${runId}/data.json`;
  const keysUrl = (runId) => `/metrics/runs/${runId}/keys.json`;
  const csvUrl = (runId, keys) => `/metrics/runs/${runId}/points.csv?keys=${encodeURIComponent(keys.join(","))}`;
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const DRAWN_MAX = 20000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Live points are drawn at once as a "tail" (an SVG path over the chart, on Plotly's own axis
  // transforms) and folded into the Plotly trace with extendTraces at most this often per panel,
  // when the page is idle. A Plotly redraw of one panel costs 6-20 ms whatever it adds; a tail
  // segment costs microseconds. A point outside the drawn axes redraws its panel at once instead.
  const SYNC_MS = 2000;
  // Lazy panels: keys per data.json request (the view reads at most 200; this keeps URLs short),
  // how long a panel must stay in view before its fetch goes out (a fast scroll past a thousand
  // panels fetches none of them), how far outside the viewport a panel counts as in view, and up
  // to how many listed keys the groups start open.
  const LOAD_CHUNK = 50;
  const LOAD_DELAY_MS = 60;
  const VIEW_MARGIN = "200px 0px";
  const OPEN_GROUPS_MAX = 24;
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
      filter: (p.get("filter") || "").slice(0, 200),
    };
  }
  function writeState(state) {
    const p = new URLSearchParams(location.search);
    const set = (k, v) => (v === null || v === "" || v === undefined ? p.delete(k) : p.set(k, v));
    set("smooth", state.smooth ? String(state.smooth) : null);
    set("x", state.x === "time" ? "time" : null);
    set("logy", state.logy ? "1" : null);
    set("range", state.range ? state.range.map((v) => Math.round(v)).join(",") : null);
    set("filter", state.filter || null);
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

  // The filter box: a substring, or a glob when it holds * or ? (`train/*/grad_norm`, whole key),
  // case-insensitive. null when empty (everything shows).
  function keyMatcher(query) {
    const q = (query || "").trim().toLowerCase();
    if (!q) return null;
    if (!/[*?]/.test(q)) return (k) => k.toLowerCase().includes(q);
    const re = new RegExp("^" + q.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    return (k) => re.test(k.toLowerCase());
  }
  const groupName = (key) => { const i = key.indexOf("/"); return i < 0 ? "other" : key.slice(0, i + 1); }; // as panels.group_name
  const chunks = (xs, n) => { const out = []; for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n)); return out; };

  // --- one chart group (a run page, or a compare page) --------------------------------------------
  function Charts(root, cfg) {
    window.__r1lab_start = window.__r1lab_start || performance.now(); // the page's HTML, data and plotly are in
    this.root = root;
    this.cfg = cfg;
    this.state = readState();
    this.lines = {}; // "run|key" -> {runId, key, x, y, t, total, downsampled}
    this.panels = [];
    this.byKey = new Map(); // key -> the panels that draw it (a live point touches only those)
    this.eagerKeys = new Set(); // keys of the first screen's panels (run) or the metrics (compare)
    this.wanted = new Set(); // keys whose live points the page keeps: eager, held in a line, or being fetched
    this.groups = []; // run mode: the other keys by prefix (buildGroups)
    this.groupOf = new Map(); // listed key -> its group
    this.inflight = new Map(); // "run|key" being fetched -> live points that came meanwhile
    this.fetching = new Map(); // "run|key" being fetched -> the promise of its request
    this.loadQueue = new Set();
    this.loadStats = { requests: 0, keys: 0 }; // what the lazy panels fetched (tests, benchmarks)
    this.comments = cfg.comments || [];
    // "run|key" -> [{attempt, x, y}]: what rewinds took out of the curve (a resumed attempt's
    // earlier steps), drawn faintly behind it as "attempt N, lost".
    this.lost = {};
    if (cfg.mode === "run") for (const [key, segs] of Object.entries(cfg.lost || {})) this.lost[cfg.run.id + "|" + key] = segs;
    this.runs = cfg.mode === "compare" ? cfg.runs : [{ id: cfg.run.id, name: cfg.run.name, color: "#2f5bd3", series: cfg.series }];
    for (const run of this.runs) {
      for (const [key, w] of Object.entries(run.series || {})) this.addLine(run.id, key, w);
    }
    this.lastSeen = {};
    if (window.IntersectionObserver) {
      // Which panels are on screen (with a margin): a lazy panel is fetched when it gets there, a
      // live point is drawn only into those, a panel scrolled back to is redrawn if it missed points.
      this.observer = new IntersectionObserver((entries) => {
        for (const e of entries) {
          const p = e.target.__r1panel;
          if (!p) continue;
          p.visible = e.isIntersecting;
          if (!p.visible) continue;
          if (!p.loaded) this.queueLoad(p);
          else if (p.dirty) this.renderPanel(p);
        }
      }, { rootMargin: VIEW_MARGIN });
    }
    this.buildToolbar();
    this.buildPanels();
    this.buildGroups();
    this.applyFilter();
    this.firstPaint().then(() => { window.__r1lab_ready = performance.now(); root.dataset.ready = "1"; });
    for (const run of this.runs) this.connect(run.id, true);
    if (cfg.mode === "run") { this.watchStale(); this.showSignals({ aha: cfg.aha, alarms: cfg.alarms }); }
  }

  Charts.prototype.addLine = function (runId, key, w) {
    const id = runId + "|" + key;
    this.lines[id] = { id, runId, key, x: w.x.slice(), y: w.y.slice(), t: w.t.slice(), total: w.total, downsampled: w.downsampled };
    this.wanted.add(key);
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
    const filter = bar.querySelector("[data-filter]");
    if (slider) {
      slider.value = s.smooth; if (label) label.textContent = s.smooth.toFixed(2);
      slider.addEventListener("input", () => {
        s.smooth = parseFloat(slider.value); if (label) label.textContent = s.smooth.toFixed(2);
        writeState(s); this.renderAll();
      });
    }
    if (logy) { logy.checked = s.logy; logy.addEventListener("change", () => { s.logy = logy.checked; writeState(s); this.renderAll(); }); }
    if (xsel) { xsel.value = s.x; xsel.addEventListener("change", () => { s.x = xsel.value; s.range = null; writeState(s); this.panels.forEach((p) => (p.zoom = null)); this.renderAll(); }); }
    if (filter) {
      filter.value = s.filter;
      filter.addEventListener("input", () => { s.filter = filter.value.slice(0, 200); writeState(s); this.applyFilter(); });
    }
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
    const grid = this.root.querySelector(":scope > .chart-grid");
    const specs = this.cfg.mode === "compare"
      ? this.cfg.metrics.map((k) => ({ id: "m-" + k, title: k, traces: [{ key: k, name: k, keys: [k] }] }))
      : this.cfg.panels;
    for (const spec of specs) {
      const panel = this.addPanel(grid, spec, false);
      for (const key of this.panelKeys(panel)) { this.eagerKeys.add(key); this.wanted.add(key); }
    }
  };

  // A panel's card. `lazy`: a group's panel, drawn once its series are fetched (queueLoad).
  Charts.prototype.addPanel = function (grid, spec, lazy) {
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
    const wrap = document.createElement("div"); wrap.className = "chart-plot-wrap";
    const tailSvg = document.createElementNS(SVG_NS, "svg"); tailSvg.setAttribute("class", "live-tail");
    wrap.append(plot, tailSvg);
    card.append(head, wrap);
    if (grid) grid.appendChild(card);
    const panel = { spec, card, plot, info, csv, tailSvg, zoom: null, traceMeta: [], rendered: false,
      visible: !lazy, loaded: !lazy, lazy, dirty: false, attached: !!grid, index: this.panels.length,
      snap: null, pending: null, pendingRecs: [], syncTimer: null };
    card.__r1panel = panel;
    this.panels.push(panel);
    for (const key of this.panelKeys(panel)) this.indexKey(key, panel);
    if (lazy) {
      // Before its fetch: the CSV of the key needs no data here.
      csv.href = csvUrl(this.runs[0].id, this.panelKeys(panel));
      card.classList.add("lazy");
    }
    if (grid && this.observer) this.observer.observe(card);
    return panel;
  };

  Charts.prototype.panelKeys = function (panel) {
    const out = [];
    for (const t of panel.spec.traces) { out.push(t.key); if (t.band) out.push(t.band); }
    return out;
  };

  Charts.prototype.indexKey = function (key, panel) {
    const list = this.byKey.get(key);
    if (!list) this.byKey.set(key, [panel]);
    else if (!list.includes(panel)) list.push(panel);
  };

  // --- the other keys: groups by prefix, lazy panels, the filter ---------------------------------
  Charts.prototype.buildGroups = function () {
    this.groupsBox = this.root.querySelector("[data-groups]");
    if (this.cfg.mode !== "run" || !this.groupsBox) return;
    const listed = (this.cfg.groups || []).reduce((n, g) => n + g.keys.length, 0);
    for (const g of this.cfg.groups || []) this.addGroup(g.name, g.keys.slice(), listed <= OPEN_GROUPS_MAX);
  };

  Charts.prototype.addGroup = function (name, keys, open) {
    const el = document.createElement("details");
    el.className = "chart-group";
    el.dataset.group = name;
    const summary = document.createElement("summary");
    const title = document.createElement("strong"); title.textContent = name;
    const count = document.createElement("span"); count.className = "muted"; count.dataset.groupCount = "";
    summary.append(title, " ", count);
    const grid = document.createElement("div"); grid.className = "chart-grid";
    el.append(summary, grid);
    const group = { name, keys, el, grid, count, open, openBefore: open, matched: keys, shown: null, cards: new Map() };
    el.open = open;
    el.addEventListener("toggle", () => { group.open = el.open; if (el.open) this.showGroup(group); });
    // groups sorted by name, "other" last (as panels.key_groups)
    const rank = (n) => (n === "other" ? "\uffff" : n);
    const at = this.groups.findIndex((g) => rank(g.name) > rank(name));
    if (at < 0) { this.groups.push(group); this.groupsBox.appendChild(el); }
    else { this.groupsBox.insertBefore(el, this.groups[at].el); this.groups.splice(at, 0, group); }
    for (const k of keys) this.groupOf.set(k, group);
    return group;
  };

  // The group's panels that match the filter go into its grid (cards made on first show, in key
  // order); the ones filtered out leave the page, so that nothing off the list is observed.
  Charts.prototype.showGroup = function (group) {
    if (!group.el.open || group.shown === group.matched) return;
    const want = group.matched.map((key) => {
      let p = group.cards.get(key);
      if (!p) {
        p = this.addPanel(null, { id: "k-" + key, title: key, traces: [{ key, name: key, keys: [key] }], extra: true }, true);
        group.cards.set(key, p);
      }
      return p;
    });
    const keep = new Set(want);
    for (const p of group.cards.values()) {
      if (p.attached && !keep.has(p)) { p.attached = false; p.visible = false; if (this.observer) this.observer.unobserve(p.card); }
    }
    group.grid.replaceChildren(...want.map((p) => p.card));
    for (const p of want) {
      if (p.attached) continue;
      p.attached = true;
      if (this.observer) this.observer.observe(p.card);
      else { p.visible = true; this.queueLoad(p); } // no IntersectionObserver: every panel shown is fetched
    }
    group.shown = group.matched;
  };

  // Keys that were not on the page (live, or found by a back-fill): a prefix rule's panel takes
  // the key while the rule has room (as panels.py would), else it is listed in its group.
  Charts.prototype.addKeys = function (runId, keys) {
    if (this.cfg.mode !== "run" || !this.groupsBox) return;
    const touched = new Set();
    const fresh = keys.filter((k) => !this.eagerKeys.has(k) && !this.groupOf.has(k));
    const listed = this.groups.reduce((n, g) => n + g.keys.length, 0);
    for (const key of fresh) {
      const panel = this.ruleFor(key);
      if (panel) {
        panel.spec.traces.push({ key, name: key, keys: [key], dash: panel.rule.dash, rule: panel.rule.rule });
        this.eagerKeys.add(key); this.wanted.add(key);
        this.indexKey(key, panel.panel);
        continue;
      }
      const name = groupName(key);
      const group = this.groups.find((g) => g.name === name) || this.addGroup(name, [], listed + fresh.length <= OPEN_GROUPS_MAX);
      group.keys.push(key);
      this.groupOf.set(key, group);
      touched.add(group);
    }
    for (const g of touched) { g.keys.sort(); g.shown = null; }
    if (touched.size) this.applyFilter();
  };

  Charts.prototype.ruleFor = function (key) {
    const max = this.cfg.max_prefix_traces || 12;
    for (const rule of this.cfg.prefix_rules || []) {
      if (!key.startsWith(rule.prefix) || !key.endsWith(rule.suffix)) continue;
      const panel = this.panels.find((p) => !p.lazy && p.spec.id === rule.panel);
      if (panel && panel.spec.traces.filter((t) => t.rule === rule.rule).length < max) return { panel, rule };
    }
    return null;
  };

  // The filter box narrows the first screen's panels (by title or key) and the groups' keys; a
  // group with matches opens, and closes again as it was when the filter is cleared.
  Charts.prototype.applyFilter = function () {
    const t0 = performance.now();
    const match = keyMatcher(this.state.filter);
    const runId = this.runs[0].id;
    const held = (k) => !!this.lines[runId + "|" + k];
    const shownKeys = new Set();
    let total = [...this.eagerKeys].filter(held).length;
    for (const p of this.panels) {
      if (p.lazy) continue;
      const keys = this.panelKeys(p);
      const byTitle = !match || match(p.spec.title);
      const hit = byTitle || keys.some(match);
      if (hit) for (const k of keys) if (held(k) && (byTitle || match(k))) shownKeys.add(k);
      if (p.card.hidden === !hit) continue;
      p.card.hidden = !hit;
      if (!hit) { p.visible = false; if (this.observer) this.observer.unobserve(p.card); }
      else if (this.observer) this.observer.observe(p.card);
    }
    if (match && !this._filtering) for (const g of this.groups) g.openBefore = g.el.open;
    let shown = shownKeys.size;
    for (const g of this.groups) {
      g.matched = match ? g.keys.filter(match) : g.keys;
      total += g.keys.length; shown += g.matched.length;
      g.count.textContent = match ? `${fmt(g.matched.length)} of ${fmt(g.keys.length)} keys` : `${fmt(g.keys.length)} keys`;
      g.el.hidden = !g.matched.length;
      const open = match ? g.matched.length > 0 : (this._filtering ? g.openBefore : g.el.open);
      if (g.el.open !== open) g.el.open = open; // (the toggle event shows it too: showGroup is idempotent)
      g.open = open;
      this.showGroup(g);
    }
    this._filtering = !!match;
    const count = this.root.querySelector("[data-filter-count]");
    if (count) count.textContent = match ? `${fmt(shown)} of ${fmt(total)} keys` : (this.groups.length ? `${fmt(total)} keys` : "");
    window.__r1lab_filter_ms = performance.now() - t0;
  };

  // --- lazy panels: fetched from data.json when they come into view -----------------------------
  Charts.prototype.queueLoad = function (panel) {
    this.loadQueue.add(panel);
    if (!this._loadTimer) this._loadTimer = setTimeout(() => this.flushLoads(), LOAD_DELAY_MS);
  };

  Charts.prototype.flushLoads = function () {
    this._loadTimer = null;
    const panels = [...this.loadQueue].filter((p) => p.visible && !p.loaded && !p.loading);
    this.loadQueue.clear();
    if (!panels.length) return Promise.resolve();
    const runId = this.runs[0].id;
    const keys = new Set();
    for (const p of panels) {
      p.loading = true;
      p.info.textContent = "loading…";
      for (const k of this.panelKeys(p)) keys.add(k);
    }
    return this.loadKeys(runId, [...keys]).then(() => {
      for (const p of panels) {
        p.loading = false;
        p.loaded = this.panelKeys(p).every((k) => this.lines[runId + "|" + k]);
        if (!p.loaded) { p.info.textContent = "not loaded (scroll away and back to retry)"; continue; }
        p.card.classList.remove("lazy");
        p.dirty = true;
        if (p.visible) this.renderPanel(p);
      }
    });
  };

  // Fetch the series of `keys` not held yet, LOAD_CHUNK per request, into lines; live points that
  // arrived meanwhile are appended after the window's last step. Resolves when all have answered.
  Charts.prototype.loadKeys = function (runId, keys) {
    const already = keys.map((k) => this.fetching.get(runId + "|" + k)).filter(Boolean);
    const want = keys.filter((k) => !this.lines[runId + "|" + k] && !this.inflight.has(runId + "|" + k));
    for (const k of want) { this.inflight.set(runId + "|" + k, []); this.wanted.add(k); }
    const max = this.cfg.max_points || 1000;
    return Promise.all(already.concat(chunks(want, LOAD_CHUNK).map((part) => {
      this.loadStats.requests += 1; this.loadStats.keys += part.length;
      const request = fetch(`${dataUrl(runId)}?keys=${encodeURIComponent(part.join(","))}&max_points=${max}`, { credentials: "same-origin" })
        .then((r) => { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then((d) => {
          const live = {};
          for (const k of part) {
            const id = runId + "|" + k;
            const w = (d.series || {})[k] || { x: [], y: [], t: [], total: 0, downsampled: false };
            this.addLine(runId, k, w);
            if (d.lost && d.lost[k]) this.lost[id] = d.lost[k]; else delete this.lost[id];
            const buf = this.inflight.get(id);
            this.inflight.delete(id);
            if (buf && buf.length) live[k] = buf;
          }
          if (Object.keys(live).length) this.appendPoints(runId, live);
        })
        .catch(() => {
          for (const k of part) { this.inflight.delete(runId + "|" + k); if (!this.eagerKeys.has(k)) this.wanted.delete(k); }
        })
        .finally(() => { for (const k of part) this.fetching.delete(runId + "|" + k); });
      for (const k of part) this.fetching.set(runId + "|" + k, request);
      return request;
    })));
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
        ...(trace.stack ? { stackgroup: "stack-" + run.id } : {}), // panels.py `stack`: parts of a whole (the step's phases)
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
    if (!compare && s.x === "step") {
      for (const { line } of this.panelLines(panel)) {
        for (const seg of this.lost[line.id] || []) {
          const name = esc(`attempt ${seg.attempt}, lost`);
          data.push({
            x: seg.x.slice(), y: seg.y.slice(), name, type: "scatter", mode: "lines", opacity: 0.35,
            line: { color: "#868e96", width: 1, dash: "dot" }, legendgroup: "lost-" + seg.attempt,
            hovertemplate: "step %{x}<br>%{y}<extra>" + name + "</extra>",
          });
          panel.traceMeta.push({ line: { id: "lost|" + line.id }, role: "lost" });
        }
      }
    }
    panel.ext = extents(data, s.x === "step");
    panel.legendItems = data.filter((t) => t.showlegend && t.visible !== false).length;
    return data;
  };

  // Data extents per axis ({x, y, y2}: [min, max]) of the traces as drawn (bands included).
  function extents(data, stepAxis) {
    const ext = {};
    const grow = (k, v) => {
      if (!Number.isFinite(v)) return;
      const e = ext[k] || (ext[k] = [v, v]);
      if (v < e[0]) e[0] = v; else if (v > e[1]) e[1] = v;
    };
    for (const t of data) {
      if (t.visible === false) continue;
      const ax = t.yaxis || "y";
      for (let i = 0; i < t.y.length; i++) { grow(ax, t.y[i]); if (stepAxis) grow("x", t.x[i]); }
    }
    return ext;
  }

  // A live panel whose last step has used up most of its x headroom: the fold-in redraws it with
  // new headroom, in an idle period, rather than the next point finding itself off the axes.
  Charts.prototype.nearRightEdge = function (panel) {
    const xa = panel.plot._fullLayout && panel.plot._fullLayout.xaxis;
    const l = panel.plot.layout || {};
    if (!xa || !l.xaxis || l.xaxis.autorange !== false || this.state.range || !panel.ext || !panel.ext.x) return false;
    let last = -Infinity;
    for (const p of Object.values(panel.pending || {})) if (p.x.length) last = Math.max(last, p.x[p.x.length - 1]);
    const [lo, hi] = xa.range, room = hi - Math.max(last, panel.ext.x[1]);
    return Number.isFinite(last) && room < 0.4 * Math.max(8, (hi - lo) * 0.1);
  };

  // Whether the panel's layout pins an axis range (then extendTraces would not rescale it).
  Charts.prototype.panelRangeFixed = function (panel) {
    const l = panel.plot.layout || {};
    return ["xaxis", "yaxis", "yaxis2"].some((a) => l[a] && l[a].autorange === false);
  };

  Charts.prototype.isLive = function () {
    if (this.cfg.mode !== "run") return false;
    const status = (this.status && this.status.status) || (this.cfg.run && this.cfg.run.status);
    return status === "running" || status === "stale";
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
      legend: { orientation: "h", y: -0.18, font: { size: 11 } }, shapes, annotations,
      uirevision: s.x + (s.logy ? "log" : "lin"),
    };
    if (hasY2) layout.yaxis2 = { overlaying: "y", side: "right", zeroline: false, showgrid: false, tickmode: "auto", nticks: 6 };
    const ext = panel.ext || {};
    const live = this.isLive() && !panel.zoom;
    if (s.range && s.x === "step") { layout.xaxis.range = s.range.slice(); layout.xaxis.autorange = false; }
    else if (live && ext.x) {
      // Room on the right for the steps to come, so live points land inside the drawn axes.
      const [lo, hi] = ext.x;
      layout.xaxis.range = [lo, hi + Math.max(8, Math.ceil((hi - lo) * 0.1))]; layout.xaxis.autorange = false;
    }
    for (const ax of ["y", "y2"]) {
      const e = ext[ax], name = ax === "y" ? "yaxis" : "yaxis2";
      if (!e || s.logy || !layout[name]) continue;
      const span = e[1] - e[0];
      // A constant series (a fixed learning rate) gets a range around its value: plotly's
      // default of value ± 1 would draw 1e-4 as a flat line at "0". A live run gets headroom.
      if (span > 0 && !live) continue;
      const pad = span > 0 ? span * 0.1 : Math.abs(e[0]) * 0.5 || 0.5;
      layout[name].range = [e[0] - pad, e[1] + pad]; layout[name].autorange = false;
    }
    layout.showlegend = (panel.legendItems || 0) > 1; // one line needs no legend (and a legend costs on every redraw)
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
    panel.dirty = false; // a full render draws every point the lines hold (pending tails included)
    panel.pending = null;
    clearTimeout(panel.syncTimer); panel.syncTimer = null;
    const recs = panel.pendingRecs; panel.pendingRecs = [];
    const hasData = this.panelLines(panel).length > 0;
    panel.card.classList.toggle("empty", !hasData);
    this.updateInfo(panel);
    const p = Promise.resolve(Plotly.react(panel.plot, this.traces(panel), this.layout(panel), { displaylogo: false, responsive: true }))
      .then(() => markInData(panel, recs));
    if (!panel.rendered) {
      panel.rendered = true;
      // Every redraw (react, extendTraces, relayout, a resize) re-takes the axes the tail draws on.
      panel.plot.on("plotly_afterplot", () => this.snapTail(panel));
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
  // The groups' panels are not part of it: they are drawn when they scroll into view; a panel the
  // filter hides is drawn when it shows.
  Charts.prototype.firstPaint = function () {
    const h = window.innerHeight || document.documentElement.clientHeight;
    const onScreen = (p) => { const r = p.card.getBoundingClientRect(); return r.bottom > 0 && r.top < h; };
    const eager = this.panels.filter((p) => !p.lazy);
    for (const p of eager) if (p.card.hidden) p.dirty = true;
    const shown = eager.filter((p) => !p.card.hidden);
    const first = shown.filter(onScreen);
    const rest = shown.filter((p) => !first.includes(p));
    const yieldTask = () => new Promise((resolve) => setTimeout(resolve, 0));
    return Promise.all(first.map((p) => this.renderPanel(p))).then(() => {
      window.__r1lab_first_screen = performance.now();
      window.__r1lab_first_screen_panels = first.length;
      return rest.reduce((chain, p) => chain.then(yieldTask).then(() => (p.rendered || p.card.hidden ? null : this.renderPanel(p))), Promise.resolve());
    });
  };

  // Every loaded panel on screen now; the others when they scroll into view.
  Charts.prototype.renderAll = function () {
    const now = [];
    for (const p of this.panels) {
      if (!p.loaded) continue;
      if (p.visible === false || p.card.hidden) p.dirty = true;
      else now.push(this.renderPanel(p));
    }
    return Promise.all(now);
  };

  Charts.prototype.onClick = function (panel, ev) {
    const pt = ev.points && ev.points[0];
    if (!pt) return;
    const meta = panel.traceMeta[pt.curveNumber];
    if (!meta || meta.role === "lost") return; // a lost attempt's rollouts are history, not browsable
    const w = panel.zoom && panel.zoom[meta.line.id] ? panel.zoom[meta.line.id] : meta.line;
    const step = w.x[pt.pointIndex];
    if (step === undefined) return;
    location.href = rolloutUrl(meta.line.runId, step);
  };

  Charts.prototype.onRelayout = function (panel, ev) {
    if (this._relayoutBusy) return;
    if (ev["xaxis.autorange"]) { if (panel.zoom) { panel.zoom = null; this.state.range = null; writeState(this.state); this.renderPanel(panel); } return; }
    const a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
    if (a === undefined || b === undefined) return;
    if (this.state.x === "time") {
      // Wall-time zoom: the steps logged in that time span are fetched finer, like a step zoom.
      const steps = this.stepsBetween(panel, toMs(a), toMs(b));
      if (steps) this.zoomPanel(panel, steps[0], steps[1]);
      return;
    }
    this.state.range = [a, b];
    writeState(this.state);
    this.zoomPanel(panel, Math.floor(a), Math.ceil(b));
  };

  // Plotly hands date ranges back as local-time strings ("2026-11-21 23:10:05.5") or numbers.
  function toMs(v) {
    if (v instanceof Date) return v.getTime();
    return typeof v === "number" ? v : new Date(String(v).replace(" ", "T")).getTime();
  }

  // [first, last] step of the panel's lines whose wall time falls in [ms0, ms1], or null.
  Charts.prototype.stepsBetween = function (panel, ms0, ms1) {
    let lo = Infinity, hi = -Infinity;
    for (const { line } of this.panelLines(panel)) {
      // (the lines may be downsampled: one point beyond each end, so the edges are not cut short)
      for (let i = 0; i < line.t.length; i++) {
        const ms = line.t[i] * 1000;
        if (ms >= ms0 && ms <= ms1) {
          lo = Math.min(lo, line.x[Math.max(0, i - 1)]);
          hi = Math.max(hi, line.x[Math.min(line.x.length - 1, i + 1)]);
        }
      }
    }
    return Number.isFinite(lo) ? [lo, hi] : null;
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

  // --- live tail: points drawn over the chart until the next extendTraces folds them in --------
  Charts.prototype.snapTail = function (panel) {
    const svg = panel.tailSvg;
    while (svg.firstChild) svg.firstChild.remove();
    panel.snap = null;
    const fl = panel.plot._fullLayout;
    if (!fl || !fl.xaxis || !fl.yaxis || this.state.x !== "step" || panel.zoom || !fl.xaxis._length) return;
    const xa = fl.xaxis, ya = fl.yaxis;
    const clipId = "tail-clip-" + (panel.spec.id + "").replace(/[^A-Za-z0-9_-]/g, "_") + "-" + (Charts._clip = (Charts._clip || 0) + 1);
    const clip = document.createElementNS(SVG_NS, "clipPath"); clip.setAttribute("id", clipId);
    const rect = document.createElementNS(SVG_NS, "rect");
    rect.setAttribute("x", xa._offset); rect.setAttribute("y", ya._offset);
    rect.setAttribute("width", xa._length); rect.setAttribute("height", ya._length);
    clip.appendChild(rect);
    const g = document.createElementNS(SVG_NS, "g"); g.setAttribute("clip-path", `url(#${clipId})`);
    svg.append(clip, g);
    panel.snap = { fl, g, paths: {} };
    // Points still waiting for their extendTraces are re-drawn on the new axes.
    if (panel.pending) for (const [i, p] of Object.entries(panel.pending)) this.tailDraw(panel, Number(i), p.x, p.y);
  };

  // Pixel position of (x, y) for trace i on the snapped axes, or null when outside them.
  Charts.prototype.tailPixel = function (panel, i, x, y) {
    const fl = panel.snap.fl, tr = panel.plot._fullData[i];
    const xa = fl.xaxis, ya = fl[tr && tr.yaxis === "y2" ? "yaxis2" : "yaxis"];
    if (!xa || !ya) return null;
    const lx = xa.c2l(x), ly = ya.c2l(y);
    const inside = (v, r) => Number.isFinite(v) && v >= Math.min(r[0], r[1]) && v <= Math.max(r[0], r[1]);
    if (!inside(lx, xa.range) || !inside(ly, ya.range)) return null;
    return [xa._offset + xa.l2p(lx), ya._offset + ya.l2p(ly)];
  };

  // Whether every new point of the update fits the drawn axes (then the tail can draw it).
  Charts.prototype.tailFits = function (panel, idx, upd) {
    if (!panel.snap || this.state.x !== "step") return false;
    const data = panel.plot._fullData || [];
    for (let k = 0; k < idx.length; k++) {
      const tr = data[idx[k]];
      if (!tr || tr.visible !== true || !(panel.traceMeta[idx[k]].role === "raw" || panel.traceMeta[idx[k]].role === "smooth")) continue;
      for (let j = 0; j < upd.x[k].length; j++) if (!this.tailPixel(panel, idx[k], upd.x[k][j], upd.y[k][j])) return false;
    }
    return true;
  };

  Charts.prototype.tailDraw = function (panel, i, xs, ys) {
    const meta = panel.traceMeta[i], tr = (panel.plot._fullData || [])[i];
    if (!panel.snap || !meta || !tr || tr.visible !== true || !(meta.role === "raw" || meta.role === "smooth")) return;
    let path = panel.snap.paths[i];
    if (!path) {
      // Starts at the last point plotly drew, so the tail continues its line.
      const gx = panel.plot.data[i].x, gy = panel.plot.data[i].y;
      const start = gx.length ? this.tailPixel(panel, i, gx[gx.length - 1], gy[gy.length - 1]) : null;
      const el = document.createElementNS(SVG_NS, "path");
      const line = tr.line || {};
      el.setAttribute("fill", "none");
      el.setAttribute("stroke", line.color || "#2f5bd3");
      el.setAttribute("stroke-width", line.width || 1.6);
      el.setAttribute("stroke-linejoin", "round");
      if (tr.opacity !== undefined && tr.opacity < 1) el.setAttribute("opacity", tr.opacity);
      if (line.dash === "dot") el.setAttribute("stroke-dasharray", `${line.width || 2},${2 * (line.width || 2)}`);
      panel.snap.g.appendChild(el);
      path = panel.snap.paths[i] = { el, d: start ? `M${start[0].toFixed(1)},${start[1].toFixed(1)}` : "" };
    }
    for (let j = 0; j < xs.length; j++) {
      const px = this.tailPixel(panel, i, xs[j], ys[j]);
      if (!px) continue;
      path.d += `${path.d ? "L" : "M"}${px[0].toFixed(1)},${px[1].toFixed(1)}`;
    }
    path.el.setAttribute("d", path.d);
  };

  // A panel with tail points is folded into plotly SYNC_MS after its first one, in an idle period
  // (each panel in its own idle callback, so frames go out between two redraws).
  Charts.prototype.scheduleSync = function (panel) {
    if (panel.syncTimer) return;
    panel.syncTimer = setTimeout(() => {
      const go = () => { if (panel.syncTimer) this.sync(panel); }; // else a full render folded it in
      if (window.requestIdleCallback && !document.hidden) requestIdleCallback(go, { timeout: SYNC_MS });
      else go();
    }, SYNC_MS);
  };

  // Fold the pending points into plotly's traces (one extendTraces for the panel).
  Charts.prototype.sync = function (panel) {
    clearTimeout(panel.syncTimer); panel.syncTimer = null;
    const pend = panel.pending, recs = panel.pendingRecs;
    if (pend && panel.rendered && this.nearRightEdge(panel)) return this.renderPanel(panel); // new headroom, now while idle
    panel.pending = null; panel.pendingRecs = [];
    if (!pend || !panel.rendered) return Promise.resolve();
    const idx = Object.keys(pend).map(Number);
    return Promise.resolve(Plotly.extendTraces(panel.plot, { x: idx.map((i) => pend[i].x), y: idx.map((i) => pend[i].y) }, idx))
      .then(() => markInData(panel, recs));
  };

  // Benchmark records (window.__r1lab_drawn): when the point reached plotly's graph data.
  function markInData(panel, recs) {
    if (!recs.length) return;
    const at = now();
    for (const e of recs) {
      const gx = (panel.plot.data[e.trace] || {}).x || [];
      e.inDataAt = at;
      e.inData = gx.lastIndexOf(e.step) >= 0;
    }
  }

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
  };

  Charts.prototype.onMessage = function (runId, msg) {
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
      this.comments.push(msg.comment);
      this.addCommentToList(msg.comment);
      for (const p of this.panels) {
        if (!p.rendered) continue;
        if (p.visible === false || p.card.hidden) { p.dirty = true; continue; }
        const l = this.layout(p);
        Plotly.relayout(p.plot, { shapes: l.shapes, annotations: l.annotations });
      }
    }
  };

  Charts.prototype.appendPoints = function (runId, points) {
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
  };

  Charts.prototype.draw = function (fresh, only, frameAt) {
    const drawnAt = [];
    const drawnLines = new Set();
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
      // The first panel that draws a line records its points (window.__r1lab_drawn is what the
      // live-latency benchmark reads): when drawn on screen, and when in plotly's graph data.
      const rec = [];
      panel.traceMeta.forEach((m, i) => {
        if (m.role !== "raw" || !fresh[m.line.id] || drawnLines.has(m.line.id)) return;
        drawnLines.add(m.line.id);
        for (const p of fresh[m.line.id]) rec.push({ line: m.line.id, trace: i, step: p[0], value: p[1], recv: p.recv, frame: frameAt, hidden: document.hidden });
      });
      const fits = this.tailFits(panel, idx, upd);
      const pend = (panel.pending = panel.pending || {});
      idx.forEach((i, k) => {
        const q = (pend[i] = pend[i] || { x: [], y: [] });
        q.x.push(...upd.x[k]); q.y.push(...upd.y[k]);
      });
      panel.pendingRecs.push(...rec);
      let done;
      if (fits) {
        idx.forEach((i, k) => this.tailDraw(panel, i, upd.x[k], upd.y[k]));
        this.scheduleSync(panel);
        done = Promise.resolve("tail");
      } else {
        // Outside the drawn axes: redraw the panel now with axes that hold it (the lines hold every
        // point; extendTraces would keep the fixed range of a live panel and draw it off-chart).
        done = (this.panelRangeFixed(panel) ? this.renderPanel(panel) : this.sync(panel)).then(() => "plotly");
      }
      drawnAt.push(done.then((via) => {
        const at = now();
        for (const e of rec) { e.at = at; e.via = via; window.__r1lab_drawn.push(e); }
        // …and the frame that puts them on screen (none comes while the tab is hidden).
        if (!document.hidden && rec.length) requestAnimationFrame(() => { const t = now(); for (const e of rec) e.painted = t; });
      }));
      this.updateInfo(panel);
    }
    if (window.__r1lab_drawn.length > DRAWN_MAX) window.__r1lab_drawn.splice(0, window.__r1lab_drawn.length - DRAWN_MAX);
    return Promise.all(drawnAt);
  };

  // The panels that draw the lines of `fresh` ({line id: points}), in page order.
  Charts.prototype.panelsOf = function (fresh) {
    const out = new Set();
    for (const id of Object.keys(fresh)) {
      const line = this.lines[id];
      for (const p of (line && this.byKey.get(line.key)) || []) out.add(p);
    }
    return [...out].sort((a, b) => a.index - b.index);
  };

  Charts.prototype.expectedTraceCount = function (panel) {
    let n = 0;
    for (const { line, band } of this.panelLines(panel)) {
      n += band && !panel.zoom ? 4 : 2;
      if (this.cfg.mode !== "compare" && this.state.x === "step") n += (this.lost[line.id] || []).length;
    }
    return n;
  };

  // A resumed attempt rewound the run: the steps after `after_step` are the new attempt's now.
  // The page drops what it holds after it and reads its series again (curve and lost history).
  Charts.prototype.rewound = function (runId, afterStep) {
    const held = Object.values(this.lines).filter((l) => l.runId === runId).map((l) => l.key);
    for (const k of held) { delete this.lines[runId + "|" + k]; delete this.lost[runId + "|" + k]; }
    return this.loadKeys(runId, held).then(() => { this.renderAll(); this.scheduleSignals(); });
  };

  // --- aha moment and alarms, refreshed while the run reports ------------------------------------
  // The server computes them (change-point detection, alarm rules) and caches them 10 s per run;
  // a page asks at most every SIGNALS_MS after new points, with jitter so 50 pages do not align.
  const SIGNALS_MS = 10000;
  Charts.prototype.scheduleSignals = function () {
    if (this.cfg.mode !== "run" || this._signalsTimer) return;
    this._signalsTimer = setTimeout(() => {
      fetch(`/metrics/runs/${this.runs[0].id}/signals.json`, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((d) => { if (d) this.showSignals(d); })
        .catch(() => {})
        .finally(() => (this._signalsTimer = null));
    }, (this.cfg.signals_ms || SIGNALS_MS) * (1 + Math.random() * 0.2));
  };

  Charts.prototype.showSignals = function (d) {
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
    if (JSON.stringify(this.cfg.aha) !== before) {
      for (const p of this.panels) {
        if (!p.rendered || !p.spec.aha) continue;
        if (p.visible === false || p.card.hidden) { p.dirty = true; continue; }
        const l = this.layout(p);
        Plotly.relayout(p.plot, { shapes: l.shapes, annotations: l.annotations });
      }
    }
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
