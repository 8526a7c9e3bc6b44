// Plotly charts of the rollout pages: the rejection-sampling funnel and a prompt across steps.
// Data comes from json_script blocks; labels are set as plotly text (never as HTML we build).
(function () {
  "use strict";
  const config = { displaylogo: false, responsive: true };

  function read(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const funnel = read("funnel-data");
    const fEl = document.querySelector("[data-funnel-chart]");
    if (funnel && fEl) {
      Plotly.newPlot(fEl, [{
        type: "funnel", y: funnel.names, x: funnel.values, textinfo: "value+percent initial",
        customdata: funnel.removed, hovertemplate: "%{y}: %{x} left (removed %{customdata})<extra></extra>",
      }], { margin: { l: 100, r: 20, t: 10, b: 30 }, height: 300 }, config).then(() => { fEl.dataset.ready = "1"; });
    }
    const prompt = read("prompt-chart-data");
    const pEl = document.querySelector("[data-prompt-chart]");
    if (prompt && pEl) {
      const runId = pEl.dataset.run;
      const traces = [
        { name: "mean reward", y: prompt.reward },
        { name: "accuracy", y: prompt.accuracy },
        { name: "reflection share", y: prompt.reflection },
      ].map((t) => ({ ...t, x: prompt.steps, type: "scatter", mode: "lines+markers" }));
      traces.push({ name: "mean length", x: prompt.steps, y: prompt.length, yaxis: "y2", type: "scatter", mode: "lines", line: { dash: "dot" } });
      Plotly.newPlot(pEl, traces, {
        margin: { l: 50, r: 50, t: 10, b: 40 }, height: 300, xaxis: { title: { text: "step" } },
        yaxis2: { overlaying: "y", side: "right", title: { text: "length" } }, legend: { orientation: "h" },
      }, config).then(() => {
        pEl.dataset.ready = "1";
        pEl.on("plotly_click", (ev) => { if (ev.points && ev.points.length) location.href = `/rollouts/runs/${runId}/steps/${ev.points[0].x}/`; });
      });
    }
  });
})();
