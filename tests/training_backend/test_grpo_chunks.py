"""The GRPO loop's log-prob passes share each prompt's forward pass within its group and run in
chunks of whole groups: the same log-probs, entropies, gradients and steps as one pass over the
concatenated batch (`token_logprobs`), float noise apart."""

import pytest
import torch
from safetensors.torch import load_file

from tests.training_backend.test_trainer import digits, make_model, make_spec  # noqa: F401 (fixture)
from training_backend import grpo
from training_backend.config import parse_spec
from training_backend.grpo import completion_logprobs, token_logprobs
from training_backend.report import MemoryReporter


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny") / "base")


def batch(vocab: int, B=3, G=4, P=9, C=11):
    """Left-padded prompts (each repeated G times) and right-padded completions of mixed lengths."""
    g = torch.Generator().manual_seed(0)
    prompt_len, comp_len = torch.tensor([9, 5, 7]), torch.randint(1, C + 1, (B * G,), generator=g)
    comp_len[0] = C
    pm = (torch.arange(P)[None] >= P - prompt_len[:, None]).long()
    pids = torch.randint(3, vocab, (B, P), generator=g) * pm
    cm = (torch.arange(C)[None] < comp_len[:, None]).long()
    cids = torch.randint(3, vocab, (B * G, C), generator=g) * cm
    return pids.repeat_interleave(G, 0), pm.repeat_interleave(G, 0), cids, cm, G


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompt_logprobs_entropies_and_gradients_match_the_concatenated_pass(model_dir, temperature):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    pids, pm, cids, cm, G = batch(model.config.vocab_size)
    C = cids.shape[1]
    weights = torch.randn(cids.shape, generator=torch.Generator().manual_seed(1))

    def run(fn):
        model.zero_grad()
        logp, ent = fn()
        (logp * weights * cm).sum().backward()
        return logp * cm, ent * cm, {n: p.grad.clone() for n, p in model.named_parameters()}

    a, ea, ga = run(lambda: token_logprobs(model, torch.cat([pids, cids], 1), torch.cat([pm, cm], 1), C, temperature,
                                           with_entropy=True))
    b, eb, gb = run(lambda: completion_logprobs(model, pids, pm, cids, cm, G, temperature, with_entropy=True))
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ea, eb, atol=1e-5)
    for k in ga:
        assert torch.allclose(ga[k], gb[k], rtol=1e-4, atol=1e-6), k


KEYS = ("loss", "grad_norm", "kl", "entropy", "clip_ratio/region_mean", "completions/mean_length")


@pytest.mark.parametrize("config", [
    dict(loss_type="dapo"),
    dict(loss_type="grpo", minibatches=2, num_iterations=2, clip_eps_high=0.28),
    dict(loss_type="dr_grpo", mask_truncated_completions=True),
    dict(loss_type="dapo", minibatches=4),  # minibatches of 2 rows split the groups of 4: rows run alone
])
def test_steps_in_chunks_of_one_group_match_one_chunk(tmp_path, model_dir, monkeypatch, config):
    runs = {}
    for name, budget in (("whole", 10**6), ("chunked", 1)):
        monkeypatch.setattr(grpo, "CHUNK_TOKENS", budget)
        rep = MemoryReporter()
        grpo.train(parse_spec(make_spec(tmp_path, model_dir, name, max_steps=2, **config)), rep, progress=lambda _: None)
        runs[name] = rep
    for key in KEYS:
        assert runs["chunked"].series(key) == pytest.approx(runs["whole"].series(key), rel=1e-4, abs=1e-6), key
    assert runs["whole"].series("grad_norm")[0] > 0
    a = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    b = load_file(tmp_path / "chunked" / "final" / "model.safetensors")
    # AdamW (lr 1e-3) turns float noise in near-zero gradients into visible update differences:
    # bound them well below one step's size
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
