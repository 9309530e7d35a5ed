import math

import pytest
import torch
from torch import nn

from tinyformer.positions import (
    LearnedPositionalEmbedding,
    RotaryPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)


def test_sinusoidal_hand_values():
    pe = sinusoidal_positional_encoding(50, 8)
    assert pe.shape == (50, 8)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 4))
    # position 1, pair 0: angle 1 rad; pair 1: 1 / 10000^(2/8) = 0.1 rad
    torch.testing.assert_close(pe[1, :4], torch.tensor([math.sin(1), math.cos(1), math.sin(0.1), math.cos(0.1)]))
    p, i, d = 37, 3, 8
    angle = p / 10000 ** (2 * i / d)
    torch.testing.assert_close(pe[p, 2 * i : 2 * i + 2], torch.tensor([math.sin(angle), math.cos(angle)]))


def test_sinusoidal_module_looks_up_rows():
    module = SinusoidalPositionalEncoding(16, 6)
    positions = torch.tensor([[0, 5, 15]])
    torch.testing.assert_close(module(positions), sinusoidal_positional_encoding(16, 6)[positions])


def test_sinusoidal_rejects_positions_past_the_table():
    with pytest.raises(ValueError, match="position 16 is outside 0..15"):
        SinusoidalPositionalEncoding(16, 6)(torch.tensor([3, 16]))


def test_sinusoidal_needs_even_width():
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_positional_encoding(4, 7)


def test_learned_positions_match_nn_embedding():
    ours = LearnedPositionalEmbedding(10, 4)
    ref = nn.Embedding(10, 4)
    with torch.no_grad():
        ref.weight.copy_(ours.embedding.weight)
    pos = torch.arange(10)
    torch.testing.assert_close(ours(pos), ref(pos))


def _rope_complex_reference(x, positions, theta):
    """RoPE as complex multiplication (the LLaMA formulation): pair k of x is the
    complex number x[2k] + i x[2k+1], multiplied by exp(i * p * theta^(-2k/d))."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double()[..., None] * freqs
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape).float()


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_matches_complex_rotation(theta):
    rope = RotaryPositionalEmbedding(16, 64, theta=theta)
    x = torch.randn(2, 3, 10, 16)
    positions = torch.randint(0, 64, (10,))
    torch.testing.assert_close(rope(x, positions), _rope_complex_reference(x, positions, theta), rtol=1e-5, atol=1e-5)


def test_rope_hand_rotation_of_one_pair():
    rope = RotaryPositionalEmbedding(2, 8)
    # pair 0 rotates by p radians: (1, 0) at position 3 becomes (cos 3, sin 3)
    out = rope(torch.tensor([[1.0, 0.0]]), torch.tensor([3]))
    torch.testing.assert_close(out, torch.tensor([[math.cos(3), math.sin(3)]]))


def test_rope_dot_products_depend_only_on_relative_position():
    rope = RotaryPositionalEmbedding(32, 128)
    q, k = torch.randn(32), torch.randn(32)

    def score(m, n):
        return (rope(q[None], torch.tensor([m])) @ rope(k[None], torch.tensor([n])).T).item()

    for m, n in [(5, 2), (40, 37), (100, 97)]:
        assert score(m, n) == pytest.approx(score(3, 0), abs=1e-4)
    assert score(10, 0) != pytest.approx(score(3, 0), abs=1e-3)


def test_rope_preserves_norms():
    rope = RotaryPositionalEmbedding(8, 32)
    x = torch.randn(5, 8)
    torch.testing.assert_close(rope(x, torch.arange(5)).norm(dim=-1), x.norm(dim=-1))


def test_rope_errors_name_the_problem():
    with pytest.raises(ValueError, match="d_head must be even"):
        RotaryPositionalEmbedding(7, 8)
    rope = RotaryPositionalEmbedding(8, 4)
    with pytest.raises(ValueError, match="position 4 is outside 0..3"):
        rope(torch.randn(5, 8), torch.arange(5))
    with pytest.raises(ValueError, match="built for d_head=8"):
        rope(torch.randn(3, 6), torch.arange(3))


def test_rope_per_sequence_positions_of_shape_b1t():
    rope = RotaryPositionalEmbedding(8, 32)
    x = torch.randn(3, 4, 5, 8)  # (B, H, T, d)
    positions = torch.stack([torch.randperm(32)[:5] for _ in range(3)])  # (B, T), different per sequence
    out = rope(x, positions[:, None, :])
    for b in range(3):
        torch.testing.assert_close(out[b], _rope_complex_reference(x[b], positions[b], 10000.0), rtol=1e-5, atol=1e-5)


def test_rope_rejects_positions_that_would_pair_sequences_with_heads():
    rope = RotaryPositionalEmbedding(8, 32)
    x = torch.randn(4, 4, 5, 8)  # B == H: a (B, T) tensor would broadcast silently against (H, T)
    msg = r"token_positions of shape \(4, 5\) do not fit x of shape \(4, 4, 5, 8\).*use \(B, 1, T\)"
    with pytest.raises(ValueError, match=msg):
        rope(x, torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must be \(T,\) with T=5"):
        rope(x, torch.arange(6))
    with pytest.raises(ValueError, match=r"broadcastable to \(4, 4, 5\)"):
        rope(x, torch.zeros(2, 4, 4, 5, dtype=torch.long))  # would add a dimension
    with pytest.raises(ValueError, match=r"token_positions of shape \(\)"):
        rope(x, torch.tensor(3))
