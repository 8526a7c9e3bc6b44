/* Import progress (prompt sets, cold-start imports): polls the import's JSON
   ({status, phase, done, total}) and moves the bar while the file is checked or imported;
   reloads the page when that ends, to show the preview or the result. */
(function () {
  "use strict";
  const box = document.getElementById("import-progress");
  const POLLING = ["running", "checking"];
  if (!box || !POLLING.includes(box.dataset.status)) return;
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
    const pct = data.total ? Math.min(100, Math.round((100 * data.done) / data.total)) : 0;
    bar.style.width = pct + "%";
    phase.textContent = (data.phase || data.status) + " " + data.done + " / " + (data.total || "?") + (data.total ? " (" + pct + "%)" : "");
    if (status) status.textContent = data.status;
    if (POLLING.includes(data.status)) setTimeout(poll, 700);
    else window.location.reload();
  }
  poll();
})();
