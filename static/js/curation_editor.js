/* The curation editor: live checks (debounced JSON endpoint), highlights of off-language and
 * reflection words (built with DOM text nodes, never HTML), step labels, and keyboard shortcuts.
 */
(function () {
  "use strict";
  const form = document.getElementById("editor-form");
  if (!form) return;
  const canEdit = form.dataset.canEdit === "1";
  const reasoning = document.getElementById("id_reasoning");
  const summary = document.getElementById("id_summary");
  const highlight = document.getElementById("reasoning-highlight");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  let dirty = false;

  // --- checks -----------------------------------------------------------------------------
  function completion() {
    return "<think>" + reasoning.value + "</think><answer>" + summary.value + "</answer>";
  }
  function localChecks() {
    // Trivial ones at once in the browser; the server's answer (same rules) replaces them.
    $("check-length").textContent = String(completion().length);
  }
  function paintHighlights(text, offLanguage, reflections) {
    const marks = [];
    (offLanguage || []).forEach((w) => marks.push({ start: w.start, end: w.end, cls: "offlang", title: w.script }));
    (reflections || []).forEach((w) => marks.push({ start: w.start, end: w.end, cls: "reflection", title: "reflection" }));
    marks.sort((a, b) => a.start - b.start);
    highlight.replaceChildren();
    let pos = 0;
    for (const m of marks) {
      if (m.start < pos) continue; // overlapping marks: keep the first
      if (m.start > pos) highlight.appendChild(document.createTextNode(text.slice(pos, m.start)));
      const mark = document.createElement("mark");
      mark.className = m.cls;
      mark.title = m.title;
      mark.textContent = text.slice(m.start, m.end);
      highlight.appendChild(mark);
      pos = m.end;
    }
    highlight.appendChild(document.createTextNode(text.slice(pos)));
  }
  let checkTimer = null;
  let checkSeq = 0;
  async function serverChecks() {
    const seq = ++checkSeq;
    const text = reasoning.value;
    const body = new URLSearchParams({ reasoning: text, summary: summary.value });
    $("checks-state").textContent = "checking…";
    let data;
    try {
      const resp = await fetch(form.dataset.checksUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf, "X-Requested-With": "fetch" },
      });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      data = await resp.json();
    } catch (err) {
      if (seq === checkSeq) $("checks-state").textContent = "checks unavailable (" + err.message + ")";
      return;
    }
    if (seq !== checkSeq) return; // a newer request is on its way
    $("check-length").textContent = String(data.length);
    $("check-format").textContent = data.format_score.toFixed(1);
    $("check-accuracy").textContent = data.accuracy === null ? "no gold" : data.accuracy.toFixed(1);
    $("check-language").textContent = data.language_score.toFixed(2);
    $("check-reflections").textContent = String(data.reflection_count);
    const off = data.off_language.reasoning.length + data.off_language.summary.length;
    $("check-offlang").textContent = String(off);
    $("checks-state").textContent = "";
    paintHighlights(text, data.off_language.reasoning, data.reflections);
    $("checks").dataset.checked = String(seq); // for tests and for people: these are the server's figures
  }
  function scheduleChecks() {
    localChecks();
    clearTimeout(checkTimer);
    checkTimer = setTimeout(serverChecks, 350);
  }
  paintHighlights(reasoning.value, [], []);
  if (canEdit) [reasoning, summary].forEach((el) => el.addEventListener("input", () => { dirty = true; scheduleChecks(); }));
  serverChecks();

  // --- saving -----------------------------------------------------------------------------
  function submitWith(action) {
    if (!canEdit) return;
    $("action-field").value = action;
    dirty = false;
    form.requestSubmit ? form.requestSubmit() : form.submit();
  }
  form.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", (ev) => {
    ev.preventDefault();
    submitWith(b.dataset.action);
  }));
  form.addEventListener("change", (ev) => { if (ev.target.name && ev.target.name.startsWith("label_")) dirty = true; });
  form.addEventListener("input", (ev) => { if (ev.target.classList.contains("step-note")) dirty = true; });
  window.addEventListener("beforeunload", (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ""; } });

  // --- steps (issue 18) ---------------------------------------------------------------------------
  // One step is current (outlined); C / X / N label it and move on, F marks it the first wrong step
  // (incorrect, and the unlabelled steps before it correct), U clears it, M opens its note.
  // The first wrong step shown follows steps.first_wrong_step on the server: the earliest incorrect
  // step when every step before it is labelled.
  const stepItems = Array.from(document.querySelectorAll("#steps li.step"));
  let currentStep = -1;
  stepItems.forEach((li) => {
    const text = li.querySelector("[data-step-text]");
    if (text && window.r1Render) window.r1Render(text, text.textContent); // sanitised markdown + math, like the previews
  });
  function stepLabel(li) {
    const checked = li.querySelector("input[type=radio]:checked");
    return checked ? checked.value : "";
  }
  function showFirstWrong() {
    const out = $("first-wrong");
    if (!out) return;
    let shown = stepItems.length ? "none" : "–";
    for (let i = 0; i < stepItems.length; i++) {
      const label = stepLabel(stepItems[i]);
      if (label === "incorrect") { shown = String(i + 1); break; }
      if (!label) { shown = "–"; break; }
    }
    out.textContent = shown;
    stepItems.forEach((li) => { li.dataset.label = stepLabel(li); li.classList.toggle("first-wrong", String(Number(li.dataset.index) + 1) === shown); });
  }
  function setStep(i) {
    if (!stepItems.length) return;
    currentStep = Math.max(0, Math.min(stepItems.length - 1, i));
    stepItems.forEach((li, k) => li.classList.toggle("current", k === currentStep));
    stepItems[currentStep].scrollIntoView({ block: "nearest" });
  }
  function labelStep(i, value) {
    const radio = stepItems[i].querySelector('input[type=radio][value="' + value + '"]');
    if (radio && !radio.disabled) radio.checked = true;
  }
  function stepKey(key) {
    if (!stepItems.length) return false;
    if (key === "ArrowDown") { setStep(currentStep + 1); return true; }
    if (key === "ArrowUp") { setStep(currentStep < 0 ? 0 : currentStep - 1); return true; }
    const k = key.toLowerCase();
    if (!["c", "x", "n", "f", "u", "m"].includes(k)) return false;
    if (currentStep < 0) setStep(0);
    if (k === "m") { const note = stepItems[currentStep].querySelector(".step-note"); if (note && !note.readOnly) note.focus(); return true; }
    if (!canEdit) return true;
    if (k === "f") {
      const earlier = stepItems.slice(0, currentStep).findIndex((li) => stepLabel(li) === "incorrect");
      if (earlier >= 0) { $("first-wrong").textContent = String(earlier + 1) + " (step " + (earlier + 1) + " is already incorrect)"; return true; }
      stepItems.slice(0, currentStep).forEach((li, k2) => { if (!stepLabel(li)) labelStep(k2, "correct"); });
      labelStep(currentStep, "incorrect");
    } else {
      labelStep(currentStep, { c: "correct", x: "incorrect", n: "neutral", u: "" }[k]);
      if (k !== "u") setStep(currentStep + 1);
    }
    dirty = true;
    showFirstWrong();
    return true;
  }
  stepItems.forEach((li, i) => li.addEventListener("click", () => { if (currentStep !== i) setStep(i); }));
  const stepsCard = $("steps");
  if (stepsCard) stepsCard.addEventListener("change", () => { dirty = true; showFirstWrong(); });
  showFirstWrong();

  // --- keyboard -----------------------------------------------------------------------------
  const overlay = $("shortcuts");
  function toggleHelp(show) { overlay.hidden = show === undefined ? !overlay.hidden : !show; }
  $("help-button").addEventListener("click", () => toggleHelp());
  overlay.addEventListener("click", (ev) => { if (ev.target === overlay) toggleHelp(false); });
  const scaleKey = (document.querySelector("fieldset.question[data-type=scale][data-key=quality]") ||
                    document.querySelector("fieldset.question[data-type=scale]"));
  function inTextBox(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" || (el.tagName === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(el.type)));
  }
  document.addEventListener("keydown", (ev) => {
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && (ev.key === "s" || ev.key === "S")) { ev.preventDefault(); submitWith("save"); return; }
    if (mod && ev.key === "Enter") { ev.preventDefault(); submitWith("submit"); return; }
    if (ev.key === "Escape") {
      if (!overlay.hidden) toggleHelp(false);
      else if (inTextBox(document.activeElement)) document.activeElement.blur();
      return;
    }
    if (mod || ev.altKey || inTextBox(ev.target)) return;
    if (ev.key === "?") { ev.preventDefault(); toggleHelp(); return; }
    if (stepKey(ev.key)) { ev.preventDefault(); return; }
    if (/^[1-9]$/.test(ev.key) && scaleKey && canEdit) {
      const radio = scaleKey.querySelector('input[type=radio][value="' + ev.key + '"]');
      if (radio) { radio.checked = true; dirty = true; radio.dispatchEvent(new Event("change", { bubbles: true })); ev.preventDefault(); }
      return;
    }
    if (ev.key === "j" || ev.key === "J") { const a = $("next-link"); if (a) { ev.preventDefault(); window.location.href = a.href; } return; }
    if (ev.key === "k" || ev.key === "K") { const a = $("prev-link"); if (a) { ev.preventDefault(); window.location.href = a.href; } }
  });
})();
