// The models page: a folder check takes a few seconds (the server loads it the trainer's way in
// a subprocess), so a submitted register/check form says so and cannot be sent twice.
(function () {
  document.querySelectorAll("form[data-checking-form]").forEach((form) => {
    form.addEventListener("submit", () => {
      form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      const note = form.querySelector("[data-checking]");
      if (note) note.hidden = false;
    });
  });
})();
