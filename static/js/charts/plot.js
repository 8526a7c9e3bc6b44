// The charts' plotly side: a panel's traces and layout from its lines, drawing a panel
// (Plotly.react), the first paint, clicks to a step's rollouts, and zoom (a zoomed panel fetches
// its range finer). Public plotly API only (the live tail's private use is live_tail.js).
// `plotMethods` are methods of Charts (live_chart.js).
import { dataUrl, csvUrl, emaFrom, esc, fmt, lastAtOrBefore, rolloutUrl, writeState } from "./state.js";
import { hook } from "./hooks.js";

const COLORS = ["#2f5bd3", "#d9480f", "#2b8a3e", "#ae3ec9", "#1098ad", "#e67700", "#5f3dc4", "#c92a2a"];

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

// Plotly hands date ranges back as local-time strings ("2026-11-21 23:10:05.5") or numbers.
function toMs(v) {
  if (v instanceof Date) return v.getTime();
  return typeof v === "number" ? v : new Date(String(v).replace(" ", "T")).getTime();
}

export const plotMethods = {
  traces(panel) {
    const s = this.state;
    const compare = this.cfg.mode === "compare";
    const data = [];
    panel.traceMeta = [];
    let palette = 0;
    for (const { line, trace, run, band } of this.panelLines(panel)) {
      const w = panel.zoom && panel.zoom[line.id] ? panel.zoom[line.id] : line;
      const color = compare ? run.color : COLORS[palette++ % COLORS.length];
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
  },

  expectedTraceCount(panel) {
    let n = 0;
    for (const { line, band } of this.panelLines(panel)) {
      n += band && !panel.zoom ? 4 : 2;
      if (this.cfg.mode !== "compare" && this.state.x === "step") n += (this.lost[line.id] || []).length;
    }
    return n;
  },

  // A live panel whose last step has used up most of its x headroom: the fold-in redraws it with
  // new headroom, in an idle period, rather than the next point finding itself off the axes.
  // (The range read is the one the layout pins: plotly writes a zoom back into gd.layout.)
  nearRightEdge(panel) {
    const l = panel.plot.layout || {};
    if (!l.xaxis || l.xaxis.autorange !== false || !l.xaxis.range || this.state.range || !panel.ext || !panel.ext.x) return false;
    let last = -Infinity;
    for (const p of Object.values(panel.pending || {})) if (p.x.length) last = Math.max(last, p.x[p.x.length - 1]);
    const [lo, hi] = l.xaxis.range, room = hi - Math.max(last, panel.ext.x[1]);
    return Number.isFinite(last) && room < 0.4 * Math.max(8, (hi - lo) * 0.1);
  },

  // Whether the panel's layout pins an axis range (then extendTraces would not rescale it).
  panelRangeFixed(panel) {
    const l = panel.plot.layout || {};
    return ["xaxis", "yaxis", "yaxis2"].some((a) => l[a] && l[a].autorange === false);
  },

  isLive() {
    if (this.cfg.mode !== "run") return false;
    const status = (this.status && this.status.status) || (this.cfg.run && this.cfg.run.status);
    return status === "running" || status === "stale";
  },

  layout(panel) {
    const s = this.state;
    const shapes = [], annotations = [];
    for (const c of this.comments) {
      const x = this.stepToX(c.step);
      if (x === null) continue;
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color: "#868e96", width: 1, dash: "dot" } });
      annotations.push({ x, xref: "x", yref: "paper", y: 1, yanchor: "bottom", text: "✎", showarrow: false,
        hovertext: esc(`step ${c.step} · ${c.author}: ${c.body}`).slice(0, 400), font: { size: 11, color: "#495057" } });
    }
    for (const m of this.markers || []) {
      const x = this.stepToX(m.step);
      if (x === null) continue;
      annotations.push({ x, xref: "x", yref: "paper", y: 0, yanchor: "bottom", text: "◆", showarrow: false, captureevents: !!m.url,
        hovertext: esc(`step ${m.step}: ${m.label}${m.url ? " (click to open)" : ""}`).slice(0, 200), font: { size: 10, color: "#2b8a3e" },
        r1marker: m.step });
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
  },

  updateInfo(panel) {
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
  },

  renderPanel(panel) {
    panel.dirty = false; // a full render draws every point the lines hold (pending tails included)
    panel.pending = null;
    clearTimeout(panel.syncTimer); panel.syncTimer = null;
    const recs = panel.pendingRecs; panel.pendingRecs = [];
    const hasData = this.panelLines(panel).length > 0;
    panel.card.classList.toggle("empty", !hasData);
    this.updateInfo(panel);
    const p = Promise.resolve(Plotly.react(panel.plot, this.traces(panel), this.layout(panel), { displaylogo: false, responsive: true }))
      .then(() => this.markInData(panel, recs));
    if (!panel.rendered) {
      panel.rendered = true;
      // Every redraw (react, extendTraces, relayout, a resize) re-takes the axes the tail draws on.
      panel.plot.on("plotly_afterplot", () => panel.tail.reset(this.state.x === "step" && !panel.zoom, panel.pending));
      panel.plot.on("plotly_click", (ev) => this.onClick(panel, ev));
      panel.plot.on("plotly_clickannotation", (ev) => {
        const marker = ev.annotation.r1marker !== undefined && (this.markers || []).find((m) => m.step === ev.annotation.r1marker);
        if (marker) { if (marker.url) location.href = marker.url; return; }
        if (this.cfg.aha && String(ev.annotation.text).startsWith("aha")) location.href = rolloutUrl(this.runs[0].id, this.cfg.aha.step) + "?reflection=1";
      });
      panel.plot.on("plotly_relayout", (ev) => this.onRelayout(panel, ev));
    }
    return p;
  },

  // First paint: the panels on the first screen in one go (hook "firstScreen"), then the ones
  // below it one per task, so the page answers input and live messages in between (data-ready="1"
  // and hook "ready" once every panel is drawn).
  // The groups' panels are not part of it: they are drawn when they scroll into view; a panel the
  // filter hides is drawn when it shows.
  firstPaint() {
    const h = window.innerHeight || document.documentElement.clientHeight;
    const onScreen = (p) => { const r = p.card.getBoundingClientRect(); return r.bottom > 0 && r.top < h; };
    const eager = this.panels.filter((p) => !p.lazy);
    for (const p of eager) if (p.card.hidden) p.dirty = true;
    const shown = eager.filter((p) => !p.card.hidden);
    const first = shown.filter(onScreen);
    const rest = shown.filter((p) => !first.includes(p));
    const yieldTask = () => new Promise((resolve) => setTimeout(resolve, 0));
    return Promise.all(first.map((p) => this.renderPanel(p))).then(() => {
      hook("firstScreen", performance.now(), first.length);
      return rest.reduce((chain, p) => chain.then(yieldTask).then(() => (p.rendered || p.card.hidden ? null : this.renderPanel(p))), Promise.resolve());
    });
  },

  // Every loaded panel on screen now; the others when they scroll into view.
  renderAll() {
    const drawn = [];
    for (const p of this.panels) {
      if (!p.loaded) continue;
      if (p.visible === false || p.card.hidden) p.dirty = true;
      else drawn.push(this.renderPanel(p));
    }
    return Promise.all(drawn);
  },

  onClick(panel, ev) {
    const pt = ev.points && ev.points[0];
    if (!pt) return;
    const meta = panel.traceMeta[pt.curveNumber];
    if (!meta || meta.role === "lost") return; // a lost attempt's rollouts are history, not browsable
    const w = panel.zoom && panel.zoom[meta.line.id] ? panel.zoom[meta.line.id] : meta.line;
    const step = w.x[pt.pointIndex];
    if (step === undefined) return;
    location.href = rolloutUrl(meta.line.runId, step);
  },

  onRelayout(panel, ev) {
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
  },

  // [first, last] step of the panel's lines whose wall time falls in [ms0, ms1], or null.
  stepsBetween(panel, ms0, ms1) {
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
  },

  zoomPanel(panel, lo, hi) {
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
  },
};
