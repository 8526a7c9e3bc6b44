// The charts' panels: the toolbar, a card per panel, the groups that list every other key by
// prefix, the filter box, and the lazy panels fetched when they scroll into view.
//
// Which key goes where is the server's rule (r1lab/tracking/panels.py), handed to the page as
// `cfg.key_rules` ({prefix_rules, max_prefix_traces, group_separator, other_group}): a key that
// appears live is placed from those, never from a copy of the table here.
// `panelMethods` are methods of Charts (live_chart.js).
import { LiveTail } from "./live_tail.js";
import { csvUrl, fmt, writeState } from "./state.js";
import { hook } from "./hooks.js";

// Lazy panels: how long a panel must stay in view before its fetch goes out (a fast scroll past a
// thousand panels fetches none of them), and up to how many listed keys the groups start open.
const LOAD_DELAY_MS = 60;
const OPEN_GROUPS_MAX = 24;

// The filter box: a substring, or a glob when it holds * or ? (`train/*/grad_norm`, whole key),
// case-insensitive. null when empty (everything shows).
export function keyMatcher(query) {
  const q = (query || "").trim().toLowerCase();
  if (!q) return null;
  if (!/[*?]/.test(q)) return (k) => k.toLowerCase().includes(q);
  const re = new RegExp("^" + q.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
  return (k) => re.test(k.toLowerCase());
}

export const panelMethods = {
  buildToolbar() {
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
  },

  // Panel specs: run mode uses the server's resolved panels; compare mode one panel per metric.
  buildPanels() {
    const grid = this.root.querySelector(":scope > .chart-grid");
    const specs = this.cfg.mode === "compare"
      ? this.cfg.metrics.map((k) => ({ id: "m-" + k, title: k, traces: [{ key: k, name: k, keys: [k] }] }))
      : this.cfg.panels;
    for (const spec of specs) {
      const panel = this.addPanel(grid, spec, false);
      for (const key of this.panelKeys(panel)) { this.eagerKeys.add(key); this.wanted.add(key); }
    }
  },

  // A panel's card. `lazy`: a group's panel, drawn once its series are fetched (queueLoad).
  addPanel(grid, spec, lazy) {
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
    const panel = { spec, card, plot, info, csv, zoom: null, traceMeta: [], rendered: false,
      visible: !lazy, loaded: !lazy, lazy, dirty: false, attached: !!grid, index: this.panels.length,
      pending: null, pendingRecs: [], syncTimer: null };
    // Live points are drawn over the plot as a tail until they are folded into its traces.
    panel.tail = new LiveTail(plot, spec.id, (i) => { const m = panel.traceMeta[i]; return !!m && (m.role === "raw" || m.role === "smooth"); });
    wrap.append(plot, panel.tail.svg);
    card.append(head, wrap);
    if (grid) grid.appendChild(card);
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
  },

  panelKeys(panel) {
    const out = [];
    for (const t of panel.spec.traces) { out.push(t.key); if (t.band) out.push(t.band); }
    return out;
  },

  indexKey(key, panel) {
    const list = this.byKey.get(key);
    if (!list) this.byKey.set(key, [panel]);
    else if (!list.includes(panel)) list.push(panel);
  },

  // --- the other keys: groups by prefix, lazy panels, the filter -------------------------------
  // A key's group, by the server's rule (panels.group_name): the text up to its first separator,
  // or the "other" group.
  groupName(key) {
    const { group_separator: sep, other_group: other } = this.cfg.key_rules;
    const i = key.indexOf(sep);
    return i < 0 ? other : key.slice(0, i + sep.length);
  },

  buildGroups() {
    this.groupsBox = this.root.querySelector("[data-groups]");
    if (this.cfg.mode !== "run" || !this.groupsBox) return;
    const listed = (this.cfg.groups || []).reduce((n, g) => n + g.keys.length, 0);
    for (const g of this.cfg.groups || []) this.addGroup(g.name, g.keys.slice(), listed <= OPEN_GROUPS_MAX);
  },

  addGroup(name, keys, open) {
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
    // groups sorted by name, the "other" group last (as the server sorts them)
    const other = this.cfg.key_rules.other_group;
    const rank = (n) => (n === other ? "\uffff" : n);
    const at = this.groups.findIndex((g) => rank(g.name) > rank(name));
    if (at < 0) { this.groups.push(group); this.groupsBox.appendChild(el); }
    else { this.groupsBox.insertBefore(el, this.groups[at].el); this.groups.splice(at, 0, group); }
    for (const k of keys) this.groupOf.set(k, group);
    return group;
  },

  // The group's panels that match the filter go into its grid (cards made on first show, in key
  // order); the ones filtered out leave the page, so that nothing off the list is observed.
  showGroup(group) {
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
  },

  // Keys that were not on the page (live, or found by a back-fill): a prefix rule's panel takes
  // the key while the rule has room (as panels.py would), else it is listed in its group.
  addKeys(runId, keys) {
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
      const name = this.groupName(key);
      const group = this.groups.find((g) => g.name === name) || this.addGroup(name, [], listed + fresh.length <= OPEN_GROUPS_MAX);
      group.keys.push(key);
      this.groupOf.set(key, group);
      touched.add(group);
    }
    for (const g of touched) { g.keys.sort(); g.shown = null; }
    if (touched.size) this.applyFilter();
  },

  ruleFor(key) {
    const { prefix_rules: rules, max_prefix_traces: max } = this.cfg.key_rules;
    for (const rule of rules) {
      if (!key.startsWith(rule.prefix) || !key.endsWith(rule.suffix)) continue;
      const panel = this.panels.find((p) => !p.lazy && p.spec.id === rule.panel);
      if (panel && panel.spec.traces.filter((t) => t.rule === rule.rule).length < max) return { panel, rule };
    }
    return null;
  },

  // The filter box narrows the first screen's panels (by title or key) and the groups' keys; a
  // group with matches opens, and closes again as it was when the filter is cleared.
  applyFilter() {
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
    hook("filtered", performance.now() - t0);
  },

  // --- lazy panels: fetched from data.json when they come into view ---------------------------
  queueLoad(panel) {
    this.loadQueue.add(panel);
    if (!this._loadTimer) this._loadTimer = setTimeout(() => this.flushLoads(), LOAD_DELAY_MS);
  },

  flushLoads() {
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
  },
};
