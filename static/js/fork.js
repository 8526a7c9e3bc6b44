// The fork form: every field carries its parent's value (data-parent-value, as the field shows it);
// a field whose value differs gets the class "differs" (its "parent: …" note shows) and the
// summary counts them, as the server marked them on first render. Values are compared as text;
// nothing is written as HTML.
const form = document.querySelector("[data-fork-form]");

function current(input) {
  if (input.type === "checkbox") return input.checked ? "true" : "false";
  const v = String(input.value).trim();
  return input.getAttribute("inputmode") === "text" && v.includes(",") ? v.split(",").map((p) => p.trim()).filter(Boolean).join(", ") : v;
}

function refresh() {
  let n = 0;
  for (const field of form.querySelectorAll("[data-parent-value]")) {
    const input = field.querySelector("input, select, textarea");
    if (!input) continue;
    const differs = current(input) !== field.dataset.parentValue;
    field.classList.toggle("differs", differs);
    n += differs ? 1 : 0;
  }
  const summary = form.querySelector("[data-diff-summary]");
  summary.textContent = n ? `${n} value${n === 1 ? "" : "s"} differ${n === 1 ? "s" : ""} from the parent` : "Same config as the parent: edit what the fork should change.";
  form.dataset.diffs = String(n);
}

if (form) {
  form.addEventListener("input", refresh);
  form.addEventListener("change", refresh);
  refresh();
}
