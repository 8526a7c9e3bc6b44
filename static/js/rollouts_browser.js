// The rollout browser's buttons: "show all" for long completions, copy, and the project the
// send buttons target. Model text is only read (textContent), never written as HTML.
(function () {
  "use strict";

  function copyText(text, button) {
    const done = () => { const old = button.textContent; button.textContent = "copied"; setTimeout(() => { button.textContent = old; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallback(text) && done());
    } else if (fallback(text)) {
      done();
    }
  }

  function fallback(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button");
    if (!button) return;
    if (button.hasAttribute("data-show-all")) {
      const card = button.closest(".completion");
      const collapsed = card.classList.toggle("collapsed");
      button.textContent = collapsed ? "show all" : "show less";
    } else if (button.hasAttribute("data-copy")) {
      copyText(button.closest(".completion").querySelector("[data-text]").textContent, button);
    } else if (button.hasAttribute("data-copy-prompt")) {
      copyText(button.closest(".group").querySelector("[data-prompt]").textContent, button);
    }
  });
})();
