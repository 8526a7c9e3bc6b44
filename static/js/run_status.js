// Subscribes the run page to its live status (ws/runs/<id>/) and reconnects when closed.
(function () {
  const badge = document.getElementById("run-status");
  if (!badge) return;
  const indicator = document.getElementById("live-indicator");
  const runId = badge.dataset.runId;
  let delay = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/runs/${runId}/`);
    ws.onopen = () => { delay = 500; if (indicator) indicator.textContent = "● live"; };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "run.status") {
        badge.textContent = msg.run.status;
        badge.className = "badge status-" + msg.run.status;
        document.dispatchEvent(new CustomEvent("r1lab:run-status", { detail: msg.run }));
      }
    };
    ws.onclose = () => {
      if (indicator) indicator.textContent = "○ reconnecting";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
