"""HFGenerateEngine's own sampling loop draws what transformers' `generate` draws, token for token
(same processors, one multinomial over every row per token, rows padded after EOS, stop when all
have ended), while prefilling each prompt once and decoding into a preallocated cache."""

import pytest
import torch
from transformers import GenerationConfig

from training_backend import tiny
from training_backend.rollout import HFGenerateEngine, left_pad

PAD = 0
PROMPTS = [[5, 9, 12, 7, 30], [8, 3], [44, 45, 46, 47, 48, 49, 50, 51], [60, 61, 62]]  # left padding needed


@pytest.fixture(scope="module")
def model():
    m, _ = tiny.build_model(seed=0, num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    return m.eval()


@pytest.fixture(scope="module")
def eos(model) -> int:
    """A token the random model samples often: as EOS it ends completions at different lengths."""
    with torch.no_grad():
        return int(model(input_ids=torch.tensor([PROMPTS[2]])).logits[0].mean(0).argmax())


def generate_reference(model, eos: int, G: int, max_new_tokens: int, **sampling) -> torch.Tensor:
    ids, mask = left_pad(PROMPTS, PAD)
    # top_k=0: no top-k (left unset, transformers 5 would fill in its default 50)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, num_return_sequences=G, pad_token_id=PAD, eos_token_id=eos,
                           top_k=0, **sampling)
    return model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)[:, ids.shape[1]:]


@pytest.mark.parametrize("G, sampling, engine_kw", [
    (3, dict(do_sample=True), {}),
    (3, dict(do_sample=True, temperature=0.7, top_p=0.9), dict(temperature=0.7, top_p=0.9)),
    (1, dict(do_sample=False), dict(greedy=True)),
])
def test_completions_are_generates_token_for_token(model, eos, G, sampling, engine_kw):
    torch.manual_seed(7)
    expected = generate_reference(model, eos, G, 16, **sampling)  # (N, steps), PAD after EOS
    torch.manual_seed(7)
    roll = HFGenerateEngine(model, pad_token_id=PAD, eos_token_id=eos).generate(
        PROMPTS, num_generations=G, max_new_tokens=16, **engine_kw)
    C = roll.completion_ids.shape[1]
    assert torch.equal(roll.completion_ids, expected[:, :C]) and (expected[:, C:] == PAD).all()
    if G > 1:
        assert len(set(roll.lengths.tolist())) > 2  # EOS really ended rows at different lengths
    ids, mask = left_pad(PROMPTS, PAD)
    assert torch.equal(roll.prompt_ids, ids.repeat_interleave(G, 0))
    assert torch.equal(roll.prompt_mask, mask.repeat_interleave(G, 0))
    assert torch.equal(roll.truncated, ~(roll.completion_ids == eos).any(1))


def test_sampling_draws_from_the_whole_vocabulary(model):
    """The engine used to sample from the top 50 tokens only: `GenerationConfig(top_k=None)` means
    'unset' in transformers 5, which fills in its default 50. R1, TRL (top_k=0) and vLLM sample from
    the whole distribution, as the stage config says (temperature and top_p only)."""
    torch.manual_seed(0)
    roll = HFGenerateEngine(model, pad_token_id=PAD, eos_token_id=1).generate(
        [PROMPTS[0]], num_generations=512, max_new_tokens=1)
    # the random model's next-token distribution is near uniform over its 104 tokens
    assert len(set(roll.completion_ids[:, 0].tolist())) > 80
