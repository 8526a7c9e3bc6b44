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
//
// Step markers (the one hook for other pages' widgets): a charts root with
// data-step-markers='[{"step": 50, "label": "checkpoint 50", "url": "…"}]' gets a ◆ at the foot of
// every panel at each such step; a click on one opens its url (the pipeline run page marks the
// steps that have a checkpoint, and the url is the fork form's).
//
// This module mounts a Charts object on every [data-r1-charts] element (root.__charts); its
// methods come from one module per job, under charts/:
//   state.js      the URL state (permalink), the lines and their fetches, shared helpers
//   panels.js     toolbar, panel cards, groups by prefix, the filter, lazy panels
//   plot.js       traces and layout, drawing a panel with plotly, first paint, click, zoom
//   live.js       the socket (../socket.js), live messages, live points, fold-in, back-fill
//   live_tail.js  the live tail (the one place that reads plotly internals, and why)
//   signals.js    aha and alarm badges, the status badge, comments
//   hooks.js      opt-in hooks for the benchmarks and tests (window.r1labHooks)
import { dataMethods, readState } from "./charts/state.js";
import { panelMethods } from "./charts/panels.js";
import { plotMethods } from "./charts/plot.js";
import { liveMethods } from "./charts/live.js";
import { signalMethods } from "./charts/signals.js";
import { hook } from "./charts/hooks.js";

// How far outside the viewport a panel counts as in view.
const VIEW_MARGIN = "200px 0px";

// --- one chart group (a run page, or a compare page) ----------------------------------------------
export function Charts(root, cfg) {
  hook("start", performance.now()); // the page's HTML, data and plotly are in
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
  // Step markers: [{step, label, url}] from data-step-markers='[…]' on the charts root, drawn as a
  // ◆ at the foot of every panel; a click opens its url (the pipeline run page marks the steps
  // that have a checkpoint, the url being the fork form's).
  try { this.markers = JSON.parse(root.dataset.stepMarkers || "[]").filter((m) => Number.isFinite(m.step)); } catch (e) { this.markers = []; }
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
  this.firstPaint().then(() => { hook("ready", performance.now()); root.dataset.ready = "1"; });
  for (const run of this.runs) this.connect(run.id, true);
  if (cfg.mode === "run") { this.watchStale(); this.showSignals({ aha: cfg.aha, alarms: cfg.alarms }); }
}

Object.assign(Charts.prototype, dataMethods, panelMethods, plotMethods, liveMethods, signalMethods);

// Module scripts run once the document is parsed: every chart root is there.
document.querySelectorAll("[data-r1-charts]").forEach((root) => {
  if (root.__charts) return;
  const cfg = JSON.parse(document.getElementById(root.dataset.config).textContent);
  root.__charts = new Charts(root, cfg);
});
