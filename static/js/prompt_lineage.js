// The prompt-lineage chart: how many prompts are in each class at each step (a step line: counts
// move only where a prompt was sampled again). Data from the page's json_script; labels go to
// plotly as text, never as HTML. A click on a step opens that step's groups.
const COLORS = { learned: "#2b8a3e", forgotten: "#c92a2a", always: "#1c7ed6", never: "#e67700", mixed: "#868e96", zero_variance: "#7048e8" };

function draw() {
  const el = document.querySelector("[data-lineage-chart]");
  const src = document.getElementById("lineage-chart-data");
  if (!el || !src || !window.Plotly) return;
  const data = JSON.parse(src.textContent);
  const traces = Object.entries(data.counts).map(([key, ys]) => ({
    name: data.labels[key], x: data.steps, y: ys, type: "scatter", mode: "lines", line: { shape: "hv", color: COLORS[key], dash: key === "zero_variance" ? "dot" : "solid" },
    hovertemplate: "step %{x}: %{y} " + data.labels[key].replace(/%/g, "") + "<extra></extra>",
  }));
  const runId = el.dataset.run;
  Plotly.newPlot(el, traces, {
    margin: { l: 50, r: 20, t: 10, b: 40 }, height: 320, xaxis: { title: { text: "step" } }, yaxis: { title: { text: "prompts" }, rangemode: "tozero" },
    legend: { orientation: "h" }, hovermode: "x unified",
  }, { displaylogo: false, responsive: true }).then(() => {
    el.dataset.ready = "1";
    el.on("plotly_click", (ev) => { if (ev.points && ev.points.length) location.href = `/rollouts/runs/${runId}/steps/${ev.points[0].x}/`; });
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw); else draw();
