"""The vLLM engine's parts that do not need vLLM (it cannot be installed here; docs/vllm.md):
request building, output conversion, weight-name mapping, one-parameter-at-a-time pushes under
ZeRO-3, the sleep/wake/prefix-cache protocol, and the importance-sampling metrics that catch
stale weights. `StandInLLM` plays `vllm.LLM` with a real tiny HF model behind it."""

import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch

from training_backend import tiny
from training_backend.distributed import OptimConfig, setup_backend
from training_backend.grpo import token_logprobs
from training_backend.rollout import HFGenerateEngine, VLLMEngine
from training_backend.rollout_vllm import (
    build_requests,
    importance_sampling_metrics,
    iter_vllm_weights,
    outputs_to_rollout,
    sampling_params_kwargs,
    truncated_is_weights,
    vllm_param_name,
    weights_look_stale,
)

PAD, EOS = 0, 1


def completion(ids, logprobs=None, finish="stop"):
    lps = None if logprobs is None else [{t: SimpleNamespace(logprob=lp)} for t, lp in zip(ids, logprobs)]
    return SimpleNamespace(token_ids=ids, logprobs=lps, finish_reason=finish)


def tiny_model(seed=0):
    model, tok = tiny.build_model(seed=seed, num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                  num_attention_heads=2, num_key_value_heads=2)
    return model.eval(), tok


class StandInLLM:
    """What VLLMEngine uses of `vllm.LLM`, over an HF model: generate (token ids + the sampled
    tokens' log-probs), apply_model(load_weights), sleep / wake_up / reset_prefix_cache."""

    def __init__(self, model):
        self.model = model
        self.calls: list[tuple] = []
        self.loads: list[list[str]] = []
        llm = self

        class Shim:  # vLLM's model object: load_weights(iterable of (checkpoint name, tensor))
            def load_weights(self, weights):
                weights = list(weights)
                llm.loads.append([n for n, _ in weights])
                params = dict(llm.model.named_parameters())
                with torch.no_grad():
                    for name, t in weights:
                        params[name].copy_(t)

        self.shim = Shim()

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self, tags):
        self.calls.append(("wake_up", tuple(tags)))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))

    def apply_model(self, fn):
        return [fn(self.shim)]

    def generate(self, requests, params, use_tqdm=False):
        self.calls.append(("generate", len(requests)))
        prompts = [r["prompt_token_ids"] for r in requests]
        roll = HFGenerateEngine(self.model, pad_token_id=PAD, eos_token_id=EOS).generate(
            prompts, num_generations=params.n, max_new_tokens=params.max_tokens, temperature=params.temperature)
        ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
        with torch.no_grad():
            lp, _ = token_logprobs(self.model, ids, torch.cat([roll.prompt_mask, roll.completion_mask], 1),
                                   roll.completion_ids.shape[1], params.temperature)
        outs = []
        for i in range(len(prompts)):
            comps = []
            for j in range(i * params.n, (i + 1) * params.n):
                n = int(roll.completion_mask[j].sum())
                comps.append(completion(roll.completion_ids[j, :n].tolist(), lp[j, :n].tolist(),
                                        "length" if roll.truncated[j] else "stop"))
            outs.append(SimpleNamespace(outputs=comps))
        return outs


def test_sampling_params_and_requests():
    assert sampling_params_kwargs(num_generations=4, max_new_tokens=64, temperature=0.7, top_p=0.9) == dict(
        n=4, max_tokens=64, logprobs=0, detokenize=False, skip_special_tokens=False, temperature=0.7, top_p=0.9)
    greedy = sampling_params_kwargs(num_generations=1, max_new_tokens=8, temperature=0.7, greedy=True, seed=3)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["seed"] == 3
    assert build_requests([[5, 6], [7]]) == [{"prompt_token_ids": [5, 6]}, {"prompt_token_ids": [7]}]


def test_outputs_become_a_prompt_major_rollout_with_sampling_logprobs():
    outs = [SimpleNamespace(outputs=[completion([7, 8, EOS], [-0.1, -0.2, -0.3]),  # EOS kept
                                     completion([9, 9, 9, 9], [-1.0] * 4, finish="length")]),
            SimpleNamespace(outputs=[completion([5], [-0.5]),  # stopped on EOS that vLLM left out
                                     completion([6, EOS, 4], [-0.6, -0.7, -0.8])])]  # nothing after EOS
    r = outputs_to_rollout(outs, [[3, 4], [2]], pad_token_id=PAD, eos_token_id=EOS)
    assert r.completion_ids.tolist() == [[7, 8, EOS, PAD], [9, 9, 9, 9], [5, EOS, PAD, PAD], [6, EOS, PAD, PAD]]
    assert r.completion_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert r.truncated.tolist() == [False, True, False, False]
    assert r.prompt_ids.tolist() == [[3, 4], [3, 4], [PAD, 2], [PAD, 2]] and r.prompt_mask[2].tolist() == [0, 1]
    lp = r.sampling_logprobs
    assert lp[0, :3].tolist() == pytest.approx([-0.1, -0.2, -0.3]) and lp[0, 3] == 0
    assert lp[2, 0] == pytest.approx(-0.5) and math.isnan(lp[2, 1])  # the appended EOS has no known log-prob
    with pytest.raises(ValueError):
        outputs_to_rollout(outs[:1], [[3], [4]], pad_token_id=PAD, eos_token_id=EOS)


@pytest.mark.parametrize(("name", "want"), [
    ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"),
    ("module.model.embed_tokens.weight", "model.embed_tokens.weight"),
    ("_orig_mod.module.lm_head.weight", "lm_head.weight"),
    ("model.layers.1._checkpoint_wrapped_module.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"),
    ("base_model.model.model.layers.0.self_attn.v_proj.base_layer.weight", "model.layers.0.self_attn.v_proj.weight"),
    ("base_model.model.model.layers.0.self_attn.v_proj.lora_A.default.weight", None),
])
def test_trainer_names_map_to_checkpoint_names(name, want):
    assert vllm_param_name(name) == want


def test_weights_stream_lazily_and_skip_a_tied_head():
    seen = []

    def params():
        for n in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
            seen.append(n)
            yield "module." + n, torch.ones(2, dtype=torch.float32)

    it = iter_vllm_weights(params(), tied_embeddings=True, dtype=torch.bfloat16)
    first = next(it)
    assert first[0] == "model.embed_tokens.weight" and first[1].dtype == torch.bfloat16 and seen == ["model.embed_tokens.weight"]
    assert [n for n, _ in it] == ["model.norm.weight"]


def test_engine_protocol_sleep_wake_push_reset_and_stale_weights_show_in_the_ratio():
    trainer, _ = tiny_model(seed=0)
    llm = StandInLLM(tiny_model(seed=0)[0])
    engine = VLLMEngine("unused", pad_token_id=PAD, eos_token_id=EOS, llm=llm,
                        sampling_params_cls=lambda **kw: SimpleNamespace(**kw))
    assert llm.calls == [("sleep", 1)]  # asleep until the first rollout
    prompts = [tiny.CharTokenizer().encode_fast("User: 12+30 Assistant:")] * 2

    def rollout_metrics():
        torch.manual_seed(0)
        r = engine.generate(prompts, num_generations=3, max_new_tokens=10, temperature=1.0)
        ids = torch.cat([r.prompt_ids, r.completion_ids], 1)
        with torch.no_grad():
            lp, _ = token_logprobs(trainer, ids, torch.cat([r.prompt_mask, r.completion_mask], 1), r.completion_ids.shape[1])
        return r, importance_sampling_metrics(lp, r.sampling_logprobs, r.completion_mask)

    r, m = rollout_metrics()
    assert r.completion_ids.shape[0] == 6 and r.sampling_logprobs.shape == r.completion_ids.shape
    assert m["sampling/importance_sampling_ratio/mean"] == pytest.approx(1.0, abs=1e-4) and not weights_look_stale(m)
    assert llm.calls[1:] == [("wake_up", ("weights", "kv_cache", "scheduling")), ("generate", 2), ("sleep", 1)]

    with torch.no_grad():  # the trainer moves on; the engine still holds the old weights
        for p in trainer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    _, stale = rollout_metrics()
    assert weights_look_stale(stale) and stale["sampling/importance_sampling_ratio/max"] > 1.5

    llm.calls.clear()
    pushed = engine.update_weights(trainer)
    assert pushed == len(list(trainer.parameters())) and all(len(names) == 1 for names in llm.loads)  # one at a time
    assert llm.calls == [("wake_up", ("weights",)), ("reset_prefix_cache",)]
    _, fresh = rollout_metrics()
    assert fresh["sampling/sampling_logp_difference/max"] < 1e-4 and not weights_look_stale(fresh)
    assert llm.calls[2] == ("wake_up", ("kv_cache", "scheduling"))  # the weights were already awake


def test_truncated_importance_weights_are_capped_and_masked():
    t = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    s = torch.log(torch.tensor([[0.5, 0.1, float("nan")]]))
    w = truncated_is_weights(t, s, torch.tensor([[1, 1, 1]]), cap=2.0)
    assert w[0].tolist() == pytest.approx([1.0, 2.0, 1.0])
    assert truncated_is_weights(t, s, torch.tensor([[1, 0, 0]]))[0].tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_zero3_pushes_gather_one_parameter_at_a_time(tmp_path):
    model, _ = tiny_model(seed=1)
    want = {n: p.detach().clone() for n, p in model.named_parameters()}
    backend = setup_backend(model, OptimConfig(learning_rate=1e-3), engine="deepspeed", zero_stage=3, total_steps=1)
    params = dict(backend.module.named_parameters())
    assert all(p.numel() == 0 for p in params.values())  # partitioned: ZeRO-3 holds no full weight

    def watched():
        for name, t in backend.named_full_parameters():
            assert t.shape == want[name].shape  # this one is gathered ...
            assert all(p.numel() == 0 for n, p in params.items() if n != name)  # ... and only this one
            yield name, t

    target = StandInLLM(tiny_model(seed=2)[0])
    engine = VLLMEngine("unused", pad_token_id=PAD, eos_token_id=EOS, llm=target, enable_sleep_mode=False,
                        sampling_params_cls=lambda **kw: SimpleNamespace(**kw))
    assert engine.update_weights(named_params=watched()) == len(want)
    got = dict(target.model.named_parameters())
    assert all(torch.equal(got[n], want[n]) for n in want)
    assert all(p.numel() == 0 for p in params.values())  # released again


def test_vllm_is_imported_only_when_an_engine_is_built():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(ModuleNotFoundError, match="vllm"):
        VLLMEngine("some/model", pad_token_id=PAD, eos_token_id=EOS)
