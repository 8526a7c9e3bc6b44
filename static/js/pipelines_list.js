// The runs list, live: subscribes to ws/runs/ and updates each row's status badge and progress
// bar in place. Text goes in with textContent only (run and stage names are user input).
import { liveSocket } from "./socket.js";

const table = document.getElementById("runs-table");
if (table) {
  const hint = document.getElementById("runs-new-hint");

  function currentStage(stages) {
    const active = stages.find((s) => s.status === "running" || s.status === "queued");
    if (active) return active;
    const ran = stages.filter((s) => s.attempt > 0);
    return ran.length ? ran[ran.length - 1] : stages[0];
  }

  function update(run) {
    const row = table.querySelector(`tr[data-run-id="${run.id}"]`);
    if (!row) { if (hint) hint.hidden = false; return; }
    const badge = row.querySelector("[data-run-status]");
    badge.textContent = run.status;
    badge.className = "badge status-" + run.status;
    const stage = currentStage(run.stages || []);
    if (!stage) return;
    row.querySelector("[data-progress]").style.width = stage.pct + "%";
    row.querySelector("[data-progress-label]").textContent =
      `${stage.name} · ${stage.step}/${stage.total || "?"}` + (stage.eta_s != null && stage.status === "running" ? ` · ETA ${Math.round(stage.eta_s)} s` : "");
  }

  liveSocket("/ws/runs/", {
    indicator: document.getElementById("live-indicator"),
    onMessage: (msg) => { if (msg.type === "run.status") update(msg.run); },
  });
}
