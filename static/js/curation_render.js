/* Markdown + LaTeX rendering of untrusted text (model output, annotator edits).
 *
 * Safety, in three layers: markdown-it runs with `html: false`, so any raw HTML in the text
 * (<script>, <img onerror=…>) is escaped and shown as text; KaTeX runs with `trust: false`
 * (no \href/\url/\htmlClass); and the HTML that the two produce still goes through DOMPurify
 * before it reaches the page. This is the one place the curation pages set innerHTML, and
 * only ever with that sanitised output; everything else uses textContent.
 */
(function () {
  "use strict";
  if (!window.markdownit || !window.katex || !window.DOMPurify) return;
  const md = window.markdownit({ html: false, linkify: false, breaks: true });

  // $…$, $$…$$, \(…\), \[…\] as inline math tokens.
  const DELIMS = [["$$", "$$", true], ["\\[", "\\]", true], ["\\(", "\\)", false], ["$", "$", false]];
  function mathRule(state, silent) {
    const src = state.src;
    const pos = state.pos;
    for (const [open, close, display] of DELIMS) {
      if (!src.startsWith(open, pos)) continue;
      let end = src.indexOf(close, pos + open.length);
      while (end !== -1 && src[end - 1] === "\\" && close === "$") end = src.indexOf(close, end + 1);
      if (end === -1 || end === pos + open.length) return false;
      const content = src.slice(pos + open.length, end);
      if (open === "$" && (/^\s/.test(content) || /\s$/.test(content))) return false; // "$5 and $6": prices, not math
      if (!silent) {
        const token = state.push("math", "math", 0);
        token.content = content;
        token.meta = { display: display };
      }
      state.pos = end + close.length;
      return true;
    }
    return false;
  }
  md.inline.ruler.before("escape", "math", mathRule);
  md.renderer.rules.math = function (tokens, idx) {
    const t = tokens[idx];
    try {
      return window.katex.renderToString(t.content, { displayMode: t.meta.display, throwOnError: false, trust: false, strict: "ignore", maxSize: 50, maxExpand: 500 });
    } catch (e) {
      return "<code>" + md.utils.escapeHtml(t.content) + "</code>";
    }
  };

  function render(el, text) {
    el.innerHTML = window.DOMPurify.sanitize(md.render(text || ""), { USE_PROFILES: { html: true, mathMl: true, svg: true } });
  }

  window.r1Render = render;

  document.querySelectorAll("[data-render-from]").forEach(function (el) {
    const source = document.getElementById(el.dataset.renderFrom);
    if (!source) return;
    let timer = null;
    const update = function () { render(el, source.value !== undefined ? source.value : source.textContent); };
    update();
    source.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 150); });
  });
})();
