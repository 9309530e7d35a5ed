import re

import pytest
import torch
import torch.nn.functional as F

from tinyformer.model import TransformerConfig, TransformerLM
from tinyformer.sampling import generate, next_token_distribution, sample_next_token

CONFIG = TransformerConfig(vocab_size=30, context_length=8, d_model=16, n_layers=2, n_heads=2)


def test_temperature_scales_logits_before_softmax():
    logits = torch.randn(3, 10)
    for t in (0.5, 1.0, 2.0):
        torch.testing.assert_close(next_token_distribution(logits, t), F.softmax(logits / t, dim=-1))


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 3.0, 2.9], [5.0, 0.0, 0.0]])
    assert next_token_distribution(logits, 0).tolist() == [[0, 1, 0], [1, 0, 0]]
    assert sample_next_token(logits, 0).tolist() == [1, 0]


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0, 0.0]])
    probs = next_token_distribution(logits, top_k=2)
    expected = F.softmax(torch.tensor([4.0, 3.0]), dim=-1)
    torch.testing.assert_close(probs[0, [1, 2]], expected)
    assert probs[0, [0, 3, 4]].sum() == 0


def test_top_p_hand_example():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    # sorted mass: 0.5, 0.8, 0.95, 1.0. p = 0.7 keeps 0.5 and 0.3 (the token crossing p is kept)
    torch.testing.assert_close(next_token_distribution(logits, top_p=0.7), torch.tensor([[0, 0.625, 0, 0.375]]))
    torch.testing.assert_close(next_token_distribution(logits, top_p=0.8), torch.tensor([[0, 0.625, 0, 0.375]]))
    torch.testing.assert_close(
        next_token_distribution(logits, top_p=0.81), torch.tensor([[0, 0.5, 0.15, 0.3]]) / 0.95
    )
    torch.testing.assert_close(next_token_distribution(logits, top_p=0.2), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))


def test_sampling_errors():
    logits = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        next_token_distribution(logits, -1)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        next_token_distribution(logits, top_k=0)
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\]"):
        next_token_distribution(logits, top_p=1.5)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -float("inf"), -0.5, "0.7", True, None])
def test_bad_temperatures_are_clear_errors(temperature):
    with pytest.raises(ValueError, match=rf"temperature must be a finite number >= 0 \(0 = greedy\), got {re.escape(repr(temperature))}"):
        next_token_distribution(torch.randn(2, 5), temperature)


def test_underflowing_temperature_is_a_clear_error_not_nan():
    logits = torch.tensor([[1.0, 2.0, -3.0]])
    # 2 / 1e-45 overflows float32: without the check softmax would return NaN
    assert torch.isnan(torch.softmax(logits / 1e-45, dim=-1)).any()
    with pytest.raises(ValueError, match=r"temperature 1e-45 is so small that logits / temperature overflow float32 to inf; use temperature=0"):
        next_token_distribution(logits, 1e-45)
    with pytest.raises(ValueError, match="temperature 1e-45 is so small"):
        sample_next_token(logits, 1e-45)
    # small but representable temperatures still work, and approach greedy
    torch.testing.assert_close(next_token_distribution(logits, 1e-3), torch.tensor([[0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("top_k", [0, -3, 2.5, "3", True])
def test_bad_top_k_is_a_clear_error(top_k):
    with pytest.raises(ValueError, match=rf"top_k must be an integer >= 1 \(or None to keep every token\), got {re.escape(repr(top_k))}"):
        next_token_distribution(torch.randn(1, 5), top_k=top_k)


@pytest.mark.parametrize("top_p", [0, 0.0, -0.1, 1.0001, float("nan"), "0.9", False])
def test_bad_top_p_is_a_clear_error(top_p):
    with pytest.raises(ValueError, match=rf"top_p must be a number in \(0, 1\] \(or None to keep every token\), got {re.escape(repr(top_p))}"):
        next_token_distribution(torch.randn(1, 5), top_p=top_p)


def test_nan_logits_are_a_clear_error():
    with pytest.raises(ValueError, match="logits contain NaN"):
        next_token_distribution(torch.tensor([[0.0, float("nan")]]))


def test_generate_checks_its_options_before_running_the_model():
    model = TransformerLM(CONFIG)
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        generate(model, torch.tensor([1]), 0, temperature=float("nan"))  # even when no token is drawn
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0, got -1"):
        generate(model, torch.tensor([1]), -1)
    with pytest.raises(ValueError, match=r"max_new_tokens must be an integer >= 0, got 2.0"):
        generate(model, torch.tensor([1]), 2.0)


def test_seeded_sampling_follows_the_distribution():
    probs = torch.tensor([0.1, 0.6, 0.3])
    logits = torch.log(probs).expand(20000, 3)
    draws = sample_next_token(logits, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    again = sample_next_token(logits, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_generate_is_seeded_and_crops_to_the_context():
    model = TransformerLM(CONFIG)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    prompt = torch.tensor([1, 2, 3])
    a = generate(model, prompt, 20, seed=5)
    b = generate(model, prompt, 20, seed=5)
    assert a.shape == (23,) and torch.equal(a, b) and torch.equal(a[:3], prompt)
    assert max(seen) == CONFIG.context_length  # 23 tokens, never more than 8 fed at once


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(seed=3, temperature=1.2, top_k=10, top_p=0.9)])
def test_generate_with_kv_cache_gives_identical_tokens(kwargs):
    model = TransformerLM(CONFIG.replace(n_kv_heads=1))
    prompt = torch.randint(0, 30, (2, 3))
    plain = generate(model, prompt, 15, **kwargs)  # runs past the 8-token window
    cached = generate(model, prompt, 15, use_kv_cache=True, **kwargs)
    assert torch.equal(plain, cached)


def test_generate_stops_at_eos():
    model = TransformerLM(CONFIG)
    first = generate(model, torch.tensor([1]), 1, temperature=0)[-1].item()
    # Greedy decoding produces `first` next; declaring it the end-of-sequence id stops there.
    out = generate(model, torch.tensor([1]), 10, temperature=0, eos_id=first)
    assert out.tolist() == [1, first]


def test_generate_rejects_bad_prompt():
    with pytest.raises(ValueError, match="prompt must be a non-empty"):
        generate(TransformerLM(CONFIG), torch.tensor([], dtype=torch.long), 3)
