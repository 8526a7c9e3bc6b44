// The live tail: a live point drawn over its plotly panel at once, as an SVG path on plotly's own
// axes, until the panel's next Plotly.extendTraces (live.js, when the page idles) folds it into
// the trace and the next redraw clears the tail.
//
// Why not plotly's public API: every public way to add a point redraws the whole plot.
// Plotly.extendTraces (plotly.js 4.1) ends in Plotly.redraw -> calcdata dropped, _doPlot: 6-20 ms
// a panel here whatever it adds (maxPoints only bounds the data); Plotly.react with a datarevision
// diffs and then draws the same; scattergl needs a WebGL context per panel, which a browser caps
// (~16 a page) below the panels a run page shows. With a fixed axis range (no autorange) and
// one extendTraces per panel per message, benchmarks/live_latency.py at 50 open pages (5 Chromium
// windows + 45 sockets, a step of 18 keys every 250 ms) measured the public route against this
// tail in one session: on screen p95 15-59 s against 0.26-0.44 s with the tail (the renderers
// fell behind their redraws; docs/api.md, "How a page draws a live point", has the figures).
// So this module reads plotly internals, and it is the only one that does: `_fullLayout`'s axes
// (c2l and l2p: data -> pixel, `_offset`/`_length`: the plot area, `range`) and `_fullData` (a
// trace's resolved visibility, axis and style). A plotly upgrade that renames them breaks the
// tail only: tests/e2e/test_tracking.py checks a tail segment against plotly's own transform.
const SVG_NS = "http://www.w3.org/2000/svg";
let clips = 0;

export class LiveTail {
  // `plot`: the panel's plotly div; `name`: for the clip path's id; `drawable(i)`: whether trace i
  // takes tail points (the panel's raw and smoothed lines, not its bands or lost attempts).
  constructor(plot, name, drawable) {
    this.plot = plot;
    this.name = String(name).replace(/[^A-Za-z0-9_-]/g, "_");
    this.drawable = drawable;
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.setAttribute("class", "live-tail");
    this.snap = null;
  }

  // After every plotly redraw (react, extendTraces, relayout, a resize: plotly_afterplot) the tail
  // re-takes the axes; `on` false (a wall-time axis, a zoomed view): no tail. The points still
  // waiting for their extendTraces (`pending`: {trace index: {x, y}}) are drawn again on them.
  reset(on, pending) {
    const svg = this.svg;
    while (svg.firstChild) svg.firstChild.remove();
    this.snap = null;
    const fl = this.plot._fullLayout;
    if (!on || !fl || !fl.xaxis || !fl.yaxis || !fl.xaxis._length) return;
    const xa = fl.xaxis, ya = fl.yaxis;
    const clipId = `tail-clip-${this.name}-${++clips}`;
    const clip = document.createElementNS(SVG_NS, "clipPath"); clip.setAttribute("id", clipId);
    const rect = document.createElementNS(SVG_NS, "rect");
    rect.setAttribute("x", xa._offset); rect.setAttribute("y", ya._offset);
    rect.setAttribute("width", xa._length); rect.setAttribute("height", ya._length);
    clip.appendChild(rect);
    const g = document.createElementNS(SVG_NS, "g"); g.setAttribute("clip-path", `url(#${clipId})`);
    svg.append(clip, g);
    this.snap = { fl, g, paths: {} };
    if (pending) for (const [i, p] of Object.entries(pending)) this.draw(Number(i), p.x, p.y);
  }

  // Pixel position of (x, y) for trace i on the snapped axes, or null when outside them.
  pixel(i, x, y) {
    const fl = this.snap.fl, tr = this.plot._fullData[i];
    const xa = fl.xaxis, ya = fl[tr && tr.yaxis === "y2" ? "yaxis2" : "yaxis"];
    if (!xa || !ya) return null;
    const lx = xa.c2l(x), ly = ya.c2l(y);
    const inside = (v, r) => Number.isFinite(v) && v >= Math.min(r[0], r[1]) && v <= Math.max(r[0], r[1]);
    if (!inside(lx, xa.range) || !inside(ly, ya.range)) return null;
    return [xa._offset + xa.l2p(lx), ya._offset + ya.l2p(ly)];
  }

  shown(i) {
    const tr = (this.plot._fullData || [])[i];
    return !!tr && tr.visible === true && this.drawable(i);
  }

  // Whether every new point of an update ({x: [[…]], y: [[…]]} for the traces `idx`) falls inside
  // the drawn axes (then the tail can draw it; else the panel must be redrawn to hold it).
  fits(idx, upd) {
    if (!this.snap) return false;
    for (let k = 0; k < idx.length; k++) {
      if (!this.shown(idx[k])) continue;
      for (let j = 0; j < upd.x[k].length; j++) if (!this.pixel(idx[k], upd.x[k][j], upd.y[k][j])) return false;
    }
    return true;
  }

  // Append points to trace i's tail path (made on first use, starting at the last point plotly
  // drew so that the tail continues its line, in the trace's colour, width, dash and opacity).
  draw(i, xs, ys) {
    if (!this.snap || !this.shown(i)) return;
    let path = this.snap.paths[i];
    if (!path) {
      const gx = this.plot.data[i].x, gy = this.plot.data[i].y;
      const start = gx.length ? this.pixel(i, gx[gx.length - 1], gy[gy.length - 1]) : null;
      const tr = this.plot._fullData[i], line = tr.line || {};
      const el = document.createElementNS(SVG_NS, "path");
      el.setAttribute("fill", "none");
      el.setAttribute("stroke", line.color || "#2f5bd3");
      el.setAttribute("stroke-width", line.width || 1.6);
      el.setAttribute("stroke-linejoin", "round");
      if (tr.opacity !== undefined && tr.opacity < 1) el.setAttribute("opacity", tr.opacity);
      if (line.dash === "dot") el.setAttribute("stroke-dasharray", `${line.width || 2},${2 * (line.width || 2)}`);
      this.snap.g.appendChild(el);
      path = this.snap.paths[i] = { el, d: start ? `M${start[0].toFixed(1)},${start[1].toFixed(1)}` : "" };
    }
    for (let j = 0; j < xs.length; j++) {
      const px = this.pixel(i, xs[j], ys[j]);
      if (!px) continue;
      path.d += `${path.d ? "L" : "M"}${px[0].toFixed(1)},${px[1].toFixed(1)}`;
    }
    path.el.setAttribute("d", path.d);
  }
}
