"""A researcher imports GSM8K as downloaded (a Parquet file) in a real browser: the preview names
the format, shows the column mapping it chose and the `####` gold answers; one mapping field is
changed, the preview re-runs with it, and the import stores what the trainer reads."""
import pytest
from playwright.sync_api import expect

from r1lab.pipelines.models import PromptSet
from tests.dataset_formats import fixtures as F
from training_backend.data import read_prompt_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_gsm8k_parquet_through_the_preview_with_one_mapping_change(page, live_asgi, login_as, tmp_path):
    # As some hub copies of GSM8K carry it: an index column that detection does not take for an id.
    rows = [dict(r, uid=f"gsm-{i}") for i, r in enumerate(F.GSM8K)]
    filename, data = F.encode(rows, "parquet", name="gsm8k-train")
    upload = tmp_path / filename
    upload.write_bytes(data)

    login_as("researcher")
    page.goto(live_asgi + "/runs/prompt-sets/import/")
    page.fill("#id_name", "gsm8k from the hub")
    page.select_option("#id_kind", "math")
    page.fill("#id_eval_fraction", "0")
    page.set_input_files("#id_file", str(upload))
    page.get_by_role("button", name="Preview").click()

    expect(page.locator("#detected-format")).to_contain_text("GSM8K")
    mapping = page.locator("#column-mapping")
    expect(mapping.locator('select[name="prompt"]')).to_have_value("question")
    expect(mapping.locator('select[name="answer"]')).to_have_value("answer")
    expect(mapping.locator('select[name="answer_rule"]')).to_have_value("hash_tail")
    expect(mapping.locator('select[name="id"]')).to_have_value("")
    expect(page.locator("#ignored-columns")).to_contain_text("uid")
    expect(page.locator("#preview-rows td.gold")).to_have_text(["72", "22", "210"])
    expect(page.locator("#preview-rows tbody td:first-child")).to_have_text(["row-1", "row-2", "row-3"])

    mapping.locator('select[name="id"]').select_option("uid")
    page.click("#remap")
    expect(page.locator('#column-mapping select[name="id"]')).to_have_value("uid")
    expect(page.locator("#preview-rows tbody td:first-child")).to_have_text(["gsm-0", "gsm-1", "gsm-2"])
    expect(page.locator("#preview-rows td.gold")).to_have_text(["72", "22", "210"])
    assert not PromptSet.objects.exists()  # previews write nothing

    page.click("#confirm-import")
    expect(page.locator(".msg.success")).to_contain_text("Imported gsm8k from the hub: 3 train")
    stored = read_prompt_jsonl(PromptSet.objects.get(name="gsm8k from the hub").train_path)
    assert [(r["id"], r["answer"], r["type"]) for r in stored] == [("gsm-0", "72", "math"), ("gsm-1", "22", "math"),
                                                                  ("gsm-2", "210", "math")]
