// The charts' state and data: the view state kept in the URL (the permalink), the lines the page
// holds ("run|key" -> {x, y, t, total, downsampled}) and how they are fetched from data.json, and
// the small pure helpers (EMA, step lookups, URLs) the other chart modules share.
// `dataMethods` are methods of Charts (live_chart.js): they read and write this.lines, this.lost,
// this.wanted, this.inflight, this.fetching, this.loadStats.

export const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
export const fmt = (n) => Number(n).toLocaleString("en-US");
export const rolloutUrl = (runId, step) => `/rollouts/runs/${runId}/steps/${step}/`;
export const dataUrl = (runId) => `/metrics/runs/${runId}/data.json`;
export const keysUrl = (runId) => `/metrics/runs/${runId}/keys.json`;
export const signalsUrl = (runId) => `/metrics/runs/${runId}/signals.json`;
export const csvUrl = (runId, keys) => `/metrics/runs/${runId}/points.csv?keys=${encodeURIComponent(keys.join(","))}`;
// Wall-clock ms with sub-ms precision (comparable with the server's and a benchmark's clock).
export const now = () => performance.timeOrigin + performance.now();
export const chunks = (xs, n) => { const out = []; for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n)); return out; };
// Keys per data.json request (the view reads at most 200; this keeps URLs short).
export const LOAD_CHUNK = 50;

// --- permalink state -------------------------------------------------------------------------
export function readState() {
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

export function writeState(state) {
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
export function emaFrom(prev, ys, w) {
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

export function lastAtOrBefore(xs, ys, step) {
  let lo = 0, hi = xs.length - 1, ans = -1;
  while (lo <= hi) { const m = (lo + hi) >> 1; if (xs[m] <= step) { ans = m; lo = m + 1; } else hi = m - 1; }
  return ans < 0 ? null : ys[ans];
}

// --- the lines and their fetches ---------------------------------------------------------------
export const dataMethods = {
  addLine(runId, key, w) {
    const id = runId + "|" + key;
    this.lines[id] = { id, runId, key, x: w.x.slice(), y: w.y.slice(), t: w.t.slice(), total: w.total, downsampled: w.downsampled };
    this.wanted.add(key);
    return this.lines[id];
  },

  // Fetch the series of `keys` not held yet, LOAD_CHUNK per request, into lines; live points that
  // arrived meanwhile are appended after the window's last step. Resolves when all have answered.
  loadKeys(runId, keys) {
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
  },

  // [{line, trace, run, band}] for every run × trace key of the panel that has data.
  panelLines(panel) {
    const out = [];
    for (const run of this.runs) {
      for (const t of panel.spec.traces) {
        const line = this.lines[run.id + "|" + t.key];
        if (line) out.push({ line, trace: t, run, band: t.band ? this.lines[run.id + "|" + t.band] : null });
      }
    }
    return out;
  },

  xOf(line, xs, ts) {
    return this.state.x === "time" ? ts.map((v) => new Date(v * 1000)) : xs.slice();
  },

  stepToX(step) {
    if (this.state.x !== "time") return step;
    for (const line of Object.values(this.lines)) {
      const t = lastAtOrBefore(line.x, line.t, step);
      if (t !== null) return new Date(t * 1000);
    }
    return null;
  },
};
