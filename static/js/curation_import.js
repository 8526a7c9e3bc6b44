/* Import progress: polls the job's JSON and moves the bar; reloads when the job ends. */
(function () {
  "use strict";
  const box = document.getElementById("import-progress");
  if (!box || box.dataset.status !== "running") return;
  const bar = box.querySelector(".progress > span");
  const phase = document.getElementById("import-phase");
  const status = document.getElementById("import-status");
  async function poll() {
    let data;
    try {
      const resp = await fetch(box.dataset.url, { credentials: "same-origin" });
      data = await resp.json();
    } catch (err) {
      phase.textContent = "progress unavailable, retrying…";
      setTimeout(poll, 2000);
      return;
    }
    const pct = data.total ? Math.round((100 * data.done) / data.total) : 0;
    bar.style.width = pct + "%";
    phase.textContent = (data.phase || data.status) + " " + data.done + " / " + data.total + " (" + pct + "%)";
    status.textContent = data.status;
    if (data.status === "running") setTimeout(poll, 700);
    else window.location.reload();
  }
  poll();
})();
