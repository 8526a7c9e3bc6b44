"""Base models a researcher can trust: registering a folder runs the real check (`python -m
training_backend inspect-model` in a subprocess: this process never imports torch), stores what it
found, shows it on the models page and in the launch form, and refuses a folder transformers
cannot load with the reason, storing nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from r1lab.pipelines import services
from r1lab.pipelines.models import BaseModel
from r1lab.pipelines.state_machine import PipelineValidationError
from tests.model_folders import copy_folder, drop_tensor, make_hf_folder, set_chat_template
from tests.pipelines.factories import BaseModelFactory
from tests.training_backend.stage_factories import make_model
from training_backend import tiny
from training_backend.stage import Info

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    return make_hf_folder(tmp_path_factory.mktemp("qwen") / "model")


def test_a_model_a_stage_builds_is_checked_once_it_exists_and_a_broken_check_changes_nothing(tmp_path):
    folder = tmp_path / "tiny-base"
    model = services.base_model_register_unbuilt(name="tiny", path=str(folder), parameter_count=900_000)
    assert model.info == {} and model.checked_at is None

    make_model(folder)  # what the demo run's make-base stage writes
    services.base_model_check(base_model=model)
    model.refresh_from_db()
    assert (model.info[Info.TOKENIZER_CLASS], model.info[Info.PROMPT_TEMPLATE]) == ("CharTokenizer", tiny.TEMPLATE)
    checked = (model.info, model.checked_at, model.parameter_count)

    (folder / "model.safetensors").unlink()
    with pytest.raises(PipelineValidationError) as exc:
        services.base_model_check(base_model=model)
    assert "missing weights" in exc.value.errors["path"]
    model.refresh_from_db()
    assert (model.info, model.checked_at, model.parameter_count) == checked

    services.base_model_register_unbuilt(name="tiny", path=str(folder), parameter_count=900_000)  # the demo again
    model.refresh_from_db()
    assert model.info == checked[0]


def test_registering_a_folder_stores_and_shows_what_the_trainer_would_load_escaped(client_as, qwen, tmp_path):
    folder = copy_folder(qwen, tmp_path / "m")  # model output and folder contents are untrusted
    set_chat_template(folder, "<script>alert(1)</script>{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
                              "{% if add_generation_prompt %}[assistant]{% endif %}")
    client = client_as("researcher")

    response = client.post(reverse("pipelines:models"), {"name": "qwen <b>x</b>", "path": str(folder), "notes": ""})

    model = BaseModel.objects.get()  # stored with what the check found
    assert response.status_code == 302 and response["Location"].endswith(f"#model-{model.pk}")
    assert model.info[Info.ARCHITECTURE] == "Qwen2ForCausalLM" and model.checked_at is not None
    assert model.parameter_count == model.info[Info.PARAMETERS] > 20_000
    assert (model.info[Info.DTYPE], model.info[Info.CONTEXT_LENGTH], model.info[Info.VOCAB_SIZE]) == ("float32", 256, 320)
    html = client.get(response["Location"]).content.decode()
    assert "Qwen2ForCausalLM" in html and f'title="{model.parameter_count}"' in html
    assert "User: 47+85 Assistant: &lt;think&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;[user] 47+85[assistant]" in html
    assert "<script>alert" not in html and "qwen &lt;b&gt;x&lt;/b&gt;" in html


def test_a_folder_transformers_cannot_load_is_refused_with_the_reason_and_nothing_is_stored(client_as, qwen, tmp_path):
    folder = copy_folder(qwen, tmp_path / "m")
    drop_tensor(folder, "model.norm.weight")
    client = client_as("researcher")

    response = client.post(reverse("pipelines:models"), {"name": "broken", "path": str(folder)})

    assert response.status_code == 200 and not BaseModel.objects.exists()
    assert response.context["form"].errors["path"] == [
        "missing weights: 1 tensor(s) of Qwen2ForCausalLM are not in the checkpoint (model.norm.weight)"]
    no_folder = client.post(reverse("pipelines:models"), {"name": "gone", "path": str(tmp_path / "nope")})
    assert "does not exist" in no_folder.context["form"].errors["path"][0] and not BaseModel.objects.exists()


def test_a_check_that_does_not_finish_in_time_is_a_refusal(client_as, qwen, settings):
    settings.R1LAB_MODEL_CHECK_TIMEOUT_S = 0.2  # python + torch cannot even start in that
    response = client_as("researcher").post(reverse("pipelines:models"), {"name": "slow", "path": str(qwen)})
    assert response.context["form"].errors["path"] == ["the check of the folder did not finish in 0.2 s"]
    assert not BaseModel.objects.exists()


def test_only_a_role_that_manages_models_registers_or_checks(client_as, qwen):
    model = BaseModelFactory(path=str(qwen))
    viewer = client_as("viewer")
    assert viewer.post(reverse("pipelines:models"), {"name": "x", "path": str(qwen)}).status_code == 403
    assert viewer.post(reverse("pipelines:base_model_check", args=[model.pk])).status_code == 403
    page = viewer.get(reverse("pipelines:models")).content.decode()
    assert 'id="register-model"' not in page and "not checked yet" in page
    assert client_as("researcher").get(reverse("pipelines:base_model_check", args=[model.pk])).status_code == 405
    model.refresh_from_db()
    assert model.info == {} and BaseModel.objects.count() == 1


def test_the_launch_form_names_what_each_model_is_without_reading_the_folder(client_as):
    BaseModelFactory(name="qwen-tiny", path="/gone/by/now", info={
        Info.ARCHITECTURE: "Qwen2ForCausalLM", Info.PARAMETERS: 28_096, Info.DTYPE: "bfloat16",
        Info.CONTEXT_LENGTH: 256, Info.VOCAB_SIZE: 320, Info.CHAT_TEMPLATE: "{{ x }}"})
    BaseModelFactory(name="tiny", info={})
    html = client_as("researcher").get(reverse("pipelines:new")).content.decode()
    assert ("qwen-tiny — Qwen2ForCausalLM, 28.1k parameters, bfloat16, context 256, vocabulary 320, chat template"
            in html)
    assert "tiny — not checked yet" in html
