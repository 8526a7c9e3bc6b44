"""The path any Hugging Face folder takes through the stages (training_backend.models): a Qwen2 /
Llama folder with a byte-level BPE tokenizer, a ChatML chat template and a generation_config with
several stop ids, built here in a second (tests/model_folders.py). Checked on token ids: the chat
template's assistant-only labels, prompts rendered raw (R1-Zero) and chat-formatted, stop ids,
and every stage kind running on such a folder through the CLI."""

import json
from pathlib import Path

import pytest

from tests.model_folders import CHATML, edit_json, make_hf_folder
from tests.training_backend.stage_factories import outputs, preference_rows, spec, write_jsonl, write_spec
from training_backend import models
from training_backend.__main__ import main
from training_backend.config import ConfigError
from training_backend.sft import IGNORE, encode_chat

# ChatML as Qwen2.5 ships it (no <think> in the generation prompt); tests/model_folders.CHATML is
# the R1-distill flavour, whose generation prompt opens the think block itself.
PLAIN_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
FAST = {"torch_threads": 1}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = make_hf_folder(tmp_path_factory.mktemp("hf") / "qwen2", max_positions=512)  # R1-Zero's template: ~280 of its tokens
    edit_json(path / "generation_config.json", eos_token_id=[models.load_tokenizer(path).convert_tokens_to_ids("<|im_end|>"),
                                                              models.load_tokenizer(path).convert_tokens_to_ids("<|endoftext|>")])
    return path


@pytest.fixture(scope="module")
def tok(folder):
    return models.load_tokenizer(folder)


def _ids(tok, *tokens):
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def _learned(tok, ids, labels):
    return tok.decode([i for i, y in zip(ids, labels) if y != IGNORE], skip_special_tokens=False)


@pytest.mark.parametrize("template", [PLAIN_CHATML, CHATML], ids=["qwen-chatml", "r1-distill-chatml"])
def test_chat_template_sft_labels_only_assistant_turns_multi_turn_with_a_system_prompt(tok, template):
    tok.chat_template = template
    msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "12+30"},
            {"role": "assistant", "content": "<think> 2+0=2, 1+3=4 </think> <answer> 42 </answer>"},
            {"role": "user", "content": "and 47+85?"},
            {"role": "assistant", "content": "<think> 7+5=12 </think> <answer> 132 </answer>"}]
    ids, labels = encode_chat(msgs, tok, models.prompt_renderer(tok, None, "chat"))
    full = tok.apply_chat_template(msgs, tokenize=False)
    assert tok.decode(ids, skip_special_tokens=False) == full  # the whole conversation, rendered once
    assert len(ids) == len(labels) and all(y in (IGNORE, i) for i, y in zip(ids, labels))
    learned = _learned(tok, ids, labels)
    think_open = "" if template == CHATML else "<think>"  # an R1-distill generation prompt supplies <think> itself
    assert learned == (f"{think_open} 2+0=2, 1+3=4 </think> <answer> 42 </answer><|im_end|>\n"
                       f"{think_open} 7+5=12 </think> <answer> 132 </answer><|im_end|>\n")
    im_end, think = _ids(tok, "<|im_end|>", "<think>")
    assert sum(1 for i, y in zip(ids, labels) if y == im_end) == 2  # each assistant turn learns to stop
    if template == PLAIN_CHATML:
        assert sum(1 for y in labels if y == think) == 2  # <think> is one token, inside the assistant turn, learned
    masked = tok.decode([i for i, y in zip(ids, labels) if y == IGNORE], skip_special_tokens=False)
    assert "You are brief." in masked and "12+30" in masked and "and 47+85?" in masked
    assert "<|im_start|>assistant\n" in masked  # the turn header is prompt, never learned


def test_system_prompt_setting_is_the_system_turn_when_a_row_has_none(tok):
    tok.chat_template = PLAIN_CHATML
    msgs = [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "<answer> 2 </answer>"}]
    ids, labels = encode_chat(msgs, tok, models.prompt_renderer(tok, None, "chat", system_prompt="Think first."))
    text = tok.decode(ids, skip_special_tokens=False)
    assert text.startswith("<|im_start|>system\nThink first.<|im_end|>\n<|im_start|>user\n1+1")
    assert _learned(tok, ids, labels) == "<answer> 2 </answer><|im_end|>\n"


def test_prompts_render_raw_r1_zero_or_chat_and_markup_becomes_single_special_ids(tok):
    tok.chat_template = PLAIN_CHATML
    encode, decode = models.text_codec(tok)
    auto = models.prompt_renderer(tok, None)  # no r1lab_template.txt, a chat template: chat
    assert auto.kind == "chat"
    ids = encode(auto("12+30"))
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[-3:] == [tok.convert_tokens_to_ids("<|im_start|>"), *tok("assistant\n", add_special_tokens=False)["input_ids"]][-3:]
    raw = models.prompt_renderer(tok, None, "r1_zero")
    assert raw("12+30") == models.R1_ZERO_TEMPLATE.format(prompt="12+30") and "<|im_start|>" not in raw("12+30")
    assert models.prompt_renderer(tok, "Q: {prompt} A:", "r1_zero")("1+1") == "Q: 1+1 A:"  # the folder's own wins
    assert models.prompt_renderer(tok, "Q: {prompt} A:")("1+1") == "Q: 1+1 A:"  # auto: a folder template first
    # completions keep their R1 tags through decoding; chat markup is dropped
    text = "<think> 7+5=12 </think> <answer> 132 </answer>"
    assert decode(encode(text + "<|im_end|>")) == text


def test_chat_format_without_a_chat_template_is_a_config_error(tmp_path):
    bare = make_hf_folder(tmp_path / "bare", chat_template=None)
    tok = models.load_tokenizer(bare)
    with pytest.raises(ConfigError) as exc:
        models.prompt_renderer(tok, None, "chat")
    assert "prompt_format" in exc.value.errors
    assert models.prompt_renderer(tok, None).kind == "none"  # auto: nothing to apply
    write_jsonl([{"id": "a", "prompt": "1+1", "answer": "2"}], tmp_path / "p.jsonl")
    s = spec("eval", bare, tmp_path / "out", tmp_path / "p.jsonl", num_samples=1, max_new_tokens=4, prompt_format="chat", **FAST)
    assert main(["run", str(write_spec(s, tmp_path / "s.json"))]) == 2  # exit 2, nothing sampled
    assert not (tmp_path / "out" / "eval_results.jsonl").exists()


def test_stop_ids_are_the_eos_and_every_generation_config_eos(folder, tok):
    model, _ = models.load_model_and_tokenizer(folder)
    assert models.stop_token_ids(model, tok) == _ids(tok, "<|im_end|>", "<|endoftext|>")


def test_the_engine_stops_at_any_stop_id(folder):
    from training_backend.rollout import HFGenerateEngine

    model, tok = models.load_model_and_tokenizer(folder)
    never = model.config.vocab_size + 7  # an id no step can sample
    free = HFGenerateEngine(model, pad_token_id=tok.pad_token_id, eos_token_id=never).generate(
        [[3, 4, 5]], num_generations=1, max_new_tokens=6, greedy=True)
    seq = free.completion_ids[0].tolist()
    assert len(seq) == 6 and free.truncated.all()
    stop = seq[2]
    k = seq.index(stop)
    roll = HFGenerateEngine(model, pad_token_id=tok.pad_token_id, eos_token_id=[never, stop]).generate(
        [[3, 4, 5]], num_generations=1, max_new_tokens=6, greedy=True)
    assert roll.completion_ids[0].tolist() == seq[:k + 1]  # the second stop id ended it, and is kept
    assert roll.completion_mask[0].tolist() == [1] * (k + 1) and not roll.truncated.any()


@pytest.mark.parametrize("fmt", ["r1_zero", "chat"])
def test_every_stage_kind_runs_on_the_hf_folder(tmp_path, folder, fmt):
    """grpo, sft, rejection sampling, reward model and eval through `python -m training_backend run`
    on the Qwen2/BPE/ChatML folder, prompts raw or chat-formatted; each records how it rendered them."""
    data = tmp_path / "data"
    prompts = [{"id": f"p{i}", "prompt": f"{a}+{b}", "answer": str(a + b), "type": "math"}
               for i, (a, b) in enumerate([(12, 30), (47, 85), (10, 10), (33, 44)])]
    write_jsonl(prompts, data / "prompts.jsonl")
    write_jsonl([{"messages": [{"role": "user", "content": p["prompt"]},
                               {"role": "assistant", "content": f"<think> add </think> <answer> {p['answer']} </answer>"}]}
                 for p in prompts], data / "chat.jsonl")
    write_jsonl(preference_rows(8, seed=1), data / "pairs.jsonl")
    common = {"prompt_format": fmt, **FAST}
    stages = {
        "grpo": spec("grpo", folder, "", data / "prompts.jsonl", num_generations=2, batch_size=4, max_steps=1, beta=0.04,
                     max_completion_length=8, max_prompt_length=320, engine="torch", log_samples=2, **common),
        "sft": spec("sft", folder, "", data / "chat.jsonl", data / "chat.jsonl", max_steps=2, batch_size=2, engine="torch",
                    max_seq_length=400, eval_num_samples=1, eval_max_new_tokens=4, **common),
        "rejection_sampling": spec("rejection_sampling", folder, "", data / "prompts.jsonl", num_samples=2, max_new_tokens=8,
                                   prompts_per_batch=4, min_language_consistency=0.0, **common),
        "reward_model": spec("reward_model", folder, "", data / "pairs.jsonl", max_steps=2, batch_size=4, engine="torch",
                             max_seq_length=400, **common),
        "eval": spec("eval", folder, "", data / "prompts.jsonl", num_samples=2, max_new_tokens=8, **common),
    }
    for kind, s in stages.items():
        s["output_dir"] = str(tmp_path / kind)
        assert main(["run", str(write_spec(s, tmp_path / f"{kind}.json"))]) == 0, kind
        out = outputs(tmp_path / kind)
        assert out["kind"] == kind and out["status"] == "succeeded"
        assert out["prompt_format"]["kind"] == ("template" if fmt == "r1_zero" else "chat"), kind
        if out["final_model"]:
            # an R1-Zero stage hands its template on to the next stage; a chat stage hands on nothing
            assert (Path(out["final_model"]) / "r1lab_template.txt").exists() == (fmt == "r1_zero"), kind
    results = [json.loads(x) for x in (tmp_path / "eval" / "eval_results.jsonl").read_text().splitlines()]
    assert len(results) == 4 and all(len(r["completions"]) == 2 for r in results)


def test_a_stage_prompt_template_wins_and_a_bad_one_is_refused_by_field(tok):
    from training_backend.config import parse_config

    r = models.prompt_renderer(tok, "folder: {prompt}", "r1_zero", prompt_template="mine: {prompt} =>")
    assert r("1+1") == "mine: 1+1 =>"
    assert models.prompt_renderer(tok, None, prompt_template="Q {prompt}").kind == "template"  # auto takes it
    for bad, why in (("no slot", "has no {prompt}"), ("{prompt} {other}", "KeyError"), ("{prompt} {", "ValueError")):
        with pytest.raises(ConfigError) as exc:
            parse_config("grpo", {"prompt_template": bad})
        assert why in exc.value.errors["prompt_template"]
    assert parse_config("eval", {"prompt_template": "{{json}} {prompt}"}).prompt_template  # literal braces, escaped
    with pytest.raises(ConfigError) as exc:
        parse_config("sft", {"prompt_format": "xml"})
    assert "prompt_format" in exc.value.errors
