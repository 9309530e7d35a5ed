"""Chapter "Embeddings and positions": sinusoidal positions and RoPE."""

import torch


def sinusoidal_positions(T, D):
    """The fixed table of "Attention Is All You Need": (T, D), float32.

    PE[p, 2i] = sin(p / 10000^(2i/D)),  PE[p, 2i+1] = cos(p / 10000^(2i/D)),  p = 0 .. T-1.
    """
    p = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    angles = p * inv_freq  # (T, D/2)
    pe = torch.empty(T, D, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)  # even columns: sine
    pe[:, 1::2] = torch.cos(angles)  # odd columns: cosine of the same angle
    return pe.float()


def rope(x, token_positions, theta=10000.0):
    """Rotary positions: rotate each adjacent pair (x[2i], x[2i+1]) by the angle p * theta^(-2i/d_head).

    x: (..., T, d_head), token_positions: (T,) integers  ->  (..., T, d_head), x's dtype.
    """
    d_head = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)  # (d_head/2,)
    angles = token_positions.to(torch.float64)[:, None] * inv_freq  # (T, d_head/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., T, d_head/2) each
    out = torch.empty_like(x)
    out[..., 0::2] = x_even * cos - x_odd * sin  # the 2-D rotation of each pair
    out[..., 1::2] = x_even * sin + x_odd * cos
    return out
