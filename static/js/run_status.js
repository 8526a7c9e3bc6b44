// The run page, live: subscribes to ws/runs/<id>/ (reconnecting when closed) and updates the run
// badge, each stage's status, progress bar, ETA and buttons, and the running stage's log tail.
// Everything goes in with textContent (names and logs are untrusted text).
import { liveSocket } from "./socket.js";

const badge = document.getElementById("run-status");
if (badge) {
  const runId = badge.dataset.runId;
  const logTimers = new Map();

  function setBadge(el, status) {
    if (!el) return;
    el.textContent = status;
    el.className = "badge status-" + status;
  }

  function toggleButtons(root, status) {
    root.querySelectorAll("[data-show-when]").forEach((form) => {
      form.hidden = !form.dataset.showWhen.split(",").includes(status);
    });
  }

  function followLog(card, running) {
    const id = card.dataset.stageId;
    if (running && !logTimers.has(id)) {
      const pre = card.querySelector("[data-log]");
      const tick = () => fetch(card.dataset.logUrl, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.text() : null))
        .then((text) => { if (text !== null && pre) { pre.textContent = text; pre.scrollTop = pre.scrollHeight; } })
        .catch(() => {});
      tick();
      logTimers.set(id, setInterval(tick, 2000));
    } else if (!running && logTimers.has(id)) {
      clearInterval(logTimers.get(id));
      logTimers.delete(id);
      setTimeout(() => fetch(card.dataset.logUrl).then((r) => r.text()).then((t) => {
        const pre = card.querySelector("[data-log]"); if (pre) pre.textContent = t;
      }).catch(() => {}), 500);
    }
  }

  function updateStage(s) {
    const card = document.querySelector(`[data-stage-id="${s.id}"]`);
    if (!card) return;
    setBadge(card.querySelector("[data-stage-status]"), s.status);
    setBadge(document.querySelector(`[data-lineage-status="stage-${s.index}"]`), s.status);
    card.querySelector("[data-stage-detail]").textContent = s.status_detail || "";
    card.querySelector("[data-stage-attempt]").textContent = s.attempt;
    card.querySelector("[data-stage-progress]").style.width = s.pct + "%";
    card.querySelector("[data-stage-progress-label]").textContent =
      `step ${s.step}/${s.total || "?"}` + (s.eta_s != null && s.status === "running" ? ` · ETA ${Math.round(s.eta_s)} s` : "");
    card.querySelector("[data-stage-worker]").textContent = s.worker_host || "—";
    card.querySelector("[data-stage-exit]").textContent = s.exit_code == null ? "—" : s.exit_code;
    card.querySelector("[data-stage-heartbeat]").textContent = s.heartbeat_at ? new Date(s.heartbeat_at).toLocaleTimeString() : "—";
    toggleButtons(card, s.status);
    followLog(card, s.status === "running");
  }

  function update(run) {
    setBadge(badge, run.status);
    toggleButtons(document.querySelector(".page-head"), run.status);
    (run.stages || []).forEach(updateStage);
    document.dispatchEvent(new CustomEvent("r1lab:run-status", { detail: run }));
  }

  liveSocket(`/ws/runs/${runId}/`, {
    indicator: document.getElementById("live-indicator"),
    onMessage: (msg) => { if (msg.type === "run.status") update(msg.run); },
  });
}
