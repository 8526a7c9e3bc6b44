/* Markdown + LaTeX rendering of untrusted text (model output, annotator edits).
 *
 * Safety, in three layers: markdown-it runs with `html: false`, so any raw HTML in the text
 * (<script>, <img onerror=…>) is escaped and shown as text; KaTeX runs with `trust: false`
 * (no \href/\url/\htmlClass); and the HTML that the two produce still goes through DOMPurify
 * before it reaches the page. This is the one place the curation pages set innerHTML, and
 * only ever with that sanitised output; everything else uses textContent.
 *
 * Remote images (issue 15) are not loaded until asked: `![](https://host/x.png)` in untrusted
 * text would tell that host who opened which example, and when. A hook of a private DOMPurify
 * instance moves the `src` of an image that is not on this server to `data-remote-src` (no
 * `src`, no request); the preview shows a placeholder with the address (as text) and a button
 * that loads it. http(s), protocol-relative (`//host`) and any other scheme count as remote;
 * same-origin paths load as usual. data: images (markdown-it allows only gif/png/jpeg/webp ones)
 * load too: they make no request.
 */
(function () {
  "use strict";
  if (!window.markdownit || !window.katex || !window.DOMPurify) return;
  const md = window.markdownit({ html: false, linkify: false, breaks: true });
  const purify = window.DOMPurify(window); // a private instance: its hook changes nothing else on the page
  const loadedImages = new Set(); // remote addresses the user chose to load on this page

  function isRemote(src) {
    const raw = String(src || "").trim();
    if (/^data:image\//i.test(raw)) return false;
    if (/^[a-z][a-z0-9+.-]*:/i.test(raw)) return true; // http:, https:, ftp:, … (data: images above)
    try {
      return new URL(raw, window.location.href).origin !== window.location.origin; // //host, \\host, …
    } catch (e) {
      return true;
    }
  }

  purify.addHook("afterSanitizeAttributes", function (node) {
    if (node.nodeName !== "IMG") return;
    node.removeAttribute("srcset");
    const src = node.getAttribute("src");
    if (src !== null && isRemote(src) && !loadedImages.has(src)) {
      node.setAttribute("data-remote-src", src);
      node.removeAttribute("src");
    }
  });

  function loadImage(placeholder, src, alt) {
    loadedImages.add(src);
    const img = document.createElement("img");
    img.alt = alt;
    img.src = src;
    placeholder.replaceWith(img);
  }

  // Each <img data-remote-src> (no src: nothing was fetched) becomes a placeholder, built with
  // textContent: the address is shown, never interpreted.
  function holdRemoteImages(el) {
    el.querySelectorAll("img[data-remote-src]").forEach(function (img) {
      const src = img.getAttribute("data-remote-src");
      const alt = img.getAttribute("alt") || "";
      const box = document.createElement("span");
      box.className = "remote-image muted small";
      box.dataset.remoteImage = "";
      const what = document.createElement("span");
      what.textContent = "Remote image" + (alt ? " “" + alt + "”" : "") + " not loaded: ";
      const url = document.createElement("code");
      url.textContent = src;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = "load image";
      button.addEventListener("click", function () { loadImage(box, src, alt); });
      box.append(what, url, " ", button);
      img.replaceWith(box);
    });
  }

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
    el.innerHTML = purify.sanitize(md.render(text || ""), { USE_PROFILES: { html: true, mathMl: true, svg: true } });
    holdRemoteImages(el);
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
