"""Your turn, chapter "Embeddings and positions": sinusoidal positions and RoPE.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter positions
"""

import torch


def sinusoidal_positions(T, D):
    """The fixed position table of "Attention Is All You Need": shape (T, D), float32.

    For position p = 0 .. T-1 and column pair i = 0 .. D/2 - 1:
        PE[p, 2i]   = sin(p / 10000^(2i/D))
        PE[p, 2i+1] = cos(p / 10000^(2i/D))
    """
    raise NotImplementedError


def rope(x, token_positions, theta=10000.0):
    """Rotary positions (RoPE): rotate each adjacent pair (x[2i], x[2i+1]) by the angle
    p * theta^(-2i/d_head), where p is the token's position.

    x: (..., T, d_head), e.g. (B, H, T, d_head); token_positions: (T,) integers
    ->  (..., T, d_head), with x's dtype.
    Rotating (a, b) by angle φ gives (a cos φ - b sin φ, a sin φ + b cos φ).
    """
    raise NotImplementedError
