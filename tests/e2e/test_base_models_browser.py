"""A researcher registers a model folder in the browser: the form says it is checking, the page
shows what the folder is and how a prompt looks through its chat template; a folder that does not
load is refused with the reason. Real parts: daphne on the test database, the real check
(`python -m training_backend inspect-model` in a subprocess of the server), Chromium."""
from __future__ import annotations

import pytest

from r1lab.pipelines.models import BaseModel
from tests.model_folders import copy_folder, drop_tensor, make_hf_folder

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CHECK_TIMEOUT_MS = 150_000  # above R1LAB_MODEL_CHECK_TIMEOUT_S (120 s): a check that hangs is the server's answer

# Runs after the page's own submit handler (added later): what the form showed while it waited.
RECORD_CHECKING = """() => document.getElementById("register-model").addEventListener("submit", () => {
  const note = document.querySelector("#register-model [data-checking]");
  const button = document.querySelector("#register-model button");
  sessionStorage.setItem("checking", JSON.stringify({note: !note.hidden, disabled: button.disabled}));
})"""


def _register(page, name: str, path) -> None:
    page.fill("#id_name", name)
    page.fill("#id_path", str(path))
    page.evaluate(RECORD_CHECKING)
    # The check is a subprocess that imports torch: seconds, more on a loaded CI machine; the
    # bound is for the answer, not a wait.
    with page.expect_navigation(timeout=CHECK_TIMEOUT_MS):
        page.click("#register-model button", timeout=CHECK_TIMEOUT_MS)


def test_researcher_registers_a_folder_and_reads_its_previews_then_a_broken_one_is_refused(page, live_asgi, login_as,
                                                                                             tmp_path):
    folder = make_hf_folder(tmp_path / "qwen")
    login_as("researcher")
    page.goto(live_asgi + "/runs/models/")

    _register(page, "qwen-tiny", folder)

    assert page.evaluate("JSON.parse(sessionStorage.getItem('checking'))") == {"note": True, "disabled": True}
    model = BaseModel.objects.get(name="qwen-tiny")
    row = page.locator(f"#model-{model.pk}")
    assert row.locator("[data-col=architecture]").inner_text() == "Qwen2ForCausalLM"
    assert row.locator("[data-col=chat-template]").inner_text() == "yes"
    details = page.locator(f"#model-{model.pk}-details")
    assert details.locator("pre[data-preview=raw]").is_visible()  # opened for the model just registered
    assert details.locator("pre[data-preview=raw]").inner_text() == "User: 47+85 Assistant: <think>"
    assert details.locator("pre[data-preview=chat]").inner_text() == (
        "<|im_start|>user\n47+85<|im_end|>\n<|im_start|>assistant\n<think>\n")

    broken = copy_folder(folder, tmp_path / "broken")
    drop_tensor(broken, "model.norm.weight")
    _register(page, "broken", broken)

    assert "model.norm.weight" in page.locator("#register-model .errorlist").inner_text()
    assert page.locator("#id_path").input_value() == str(broken)  # the form keeps what was typed
    assert not BaseModel.objects.filter(name="broken").exists()
