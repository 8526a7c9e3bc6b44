// Hooks for the benchmarks and browser tests, opt-in: the page calls them only when
// `window.r1labHooks` is set before its modules run (Playwright: context.add_init_script), and
// writes no global of its own. What it reports (times are performance.now() ms unless named):
//   start(t)                  a chart group starts (the HTML, its data and plotly.js are in)
//   firstScreen(t, panels)    the panels on the first screen are drawn
//   ready(t)                  every first-screen and below-the-fold panel is drawn (data-ready="1")
//   drawn(rec)                a live point is drawn: {line, trace, step, value, recv, frame, hidden,
//                             at, via: "tail" | "plotly"} (wall-clock ms, performance.timeOrigin +
//                             now()); the page later adds `painted` (the next frame) and
//                             `inDataAt`/`inData` (when its extendTraces folded it into plotly's data)
//   filtered(ms)              one pass of the filter box took ms
// benchmarks/_tracking_browser.py (HOOKS_INIT) records them for run_page.py, run_page_keys.py and
// live_latency.py.

export function hooked(name) {
  const h = window.r1labHooks;
  return !!h && typeof h[name] === "function";
}

export function hook(name, ...args) {
  if (hooked(name)) window.r1labHooks[name](...args);
}
