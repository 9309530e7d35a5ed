"""Where a token is: sinusoidal, learned absolute, and rotary (RoPE) positions.

Attention on its own is permutation-equivariant: shuffle the tokens and the
outputs shuffle the same way. These modules are how order gets in.

Taught in: Embeddings and positions: why order matters (book/positions.md)
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Embedding

__all__ = [
    "sinusoidal_positional_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryPositionalEmbedding",
    "default_positions",
]


def default_positions(seq_len: int, device=None) -> torch.Tensor:
    """``0, 1, ..., seq_len - 1`` as a long tensor ``(T,)``."""
    return torch.arange(seq_len, device=device)


def _check_positions(token_positions: torch.Tensor, max_seq_len: int, who: str) -> None:
    if token_positions.dtype.is_floating_point:
        raise TypeError(f"{who} expects integer token_positions, got dtype {token_positions.dtype}")
    if token_positions.numel():
        lo, hi = int(token_positions.min()), int(token_positions.max())
        if lo < 0 or hi >= max_seq_len:
            raise ValueError(
                f"{who}: position {hi if hi >= max_seq_len else lo} is outside 0..{max_seq_len - 1} "
                f"(max_seq_len={max_seq_len})"
            )


def sinusoidal_positional_encoding(max_seq_len: int, d_model: int) -> torch.Tensor:
    """The table from "Attention Is All You Need", shape ``(max_seq_len, d_model)``.

    PE[p, 2i] = sin(p / 10000^(2i/d)),  PE[p, 2i+1] = cos(p / 10000^(2i/d)).
    Each pair of columns is a clock at its own frequency, from one turn every
    2*pi positions (i = 0) down to one every 10000 * 2*pi.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    pos = torch.arange(max_seq_len, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (D/2,)
    angles = pos * inv_freq  # (T, D/2)
    pe = torch.empty(max_seq_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal positions: ``token_positions (..., T)`` -> ``(..., T, D)``.

    The result is added to the token embeddings. Nothing is learned.
    """

    def __init__(self, max_seq_len: int, d_model: int):
        super().__init__()
        self.max_seq_len, self.d_model = max_seq_len, d_model
        self.register_buffer("pe", sinusoidal_positional_encoding(max_seq_len, d_model), persistent=False)

    def forward(self, token_positions: torch.Tensor) -> torch.Tensor:
        _check_positions(token_positions, self.max_seq_len, "SinusoidalPositionalEncoding")
        return self.pe[token_positions]


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (GPT-2, BERT): ``(..., T)`` -> ``(..., T, D)``."""

    def __init__(self, max_seq_len: int, d_model: int):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.embedding = Embedding(max_seq_len, d_model)
        # Position vectors start small: unit-scale noise would swamp the tokens.
        with torch.no_grad():
            self.embedding.weight.mul_(0.02)

    def forward(self, token_positions: torch.Tensor) -> torch.Tensor:
        _check_positions(token_positions, self.max_seq_len, "LearnedPositionalEmbedding")
        return self.embedding(token_positions)


class RotaryPositionalEmbedding(nn.Module):
    """RoPE (Su et al., RoFormer): rotate each pair ``(x[2k], x[2k+1])`` by ``p * theta^(-2k/d)``.

    Input ``x (..., T, d)`` and integer ``token_positions``, either ``(T,)`` (the
    same positions for every row) or with one dim per leading dim of x,
    broadcastable to ``(..., T)`` (e.g. ``(B, 1, T)``, one row per sequence, when
    x is ``(B, H, T, d)``) -> rotated ``(..., T, d)``. Applied to queries and keys, it makes
    q_m . k_n depend on the positions only through m - n: attention sees
    relative distance, with no parameters. cos/sin are cached up to max_seq_len.
    """

    def __init__(self, d_head: int, max_seq_len: int, theta: float = 10000.0, device=None):
        super().__init__()
        if d_head % 2:
            raise ValueError(f"RoPE rotates pairs of features, so d_head must be even, got {d_head}")
        self.d_head, self.max_seq_len, self.theta = d_head, max_seq_len, theta
        inv_freq = theta ** (-torch.arange(0, d_head, 2, dtype=torch.float64, device=device) / d_head)
        angles = torch.arange(max_seq_len, dtype=torch.float64, device=device)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float(), persistent=False)  # (max_T, d/2)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_head:
            raise ValueError(f"RoPE built for d_head={self.d_head}, got input of shape {tuple(x.shape)}")
        _check_positions(token_positions, self.max_seq_len, "RotaryPositionalEmbedding")
        # Positions are (T,), shared by every row, or spell out every leading dim of x:
        # a (B, T) tensor against (B, H, T, d) would broadcast against (H, T) and
        # pair sequence b with head b, so it is refused (use (B, 1, T)).
        leading = tuple(x.shape[:-1])
        try:
            fits = torch.broadcast_shapes(token_positions.shape, leading) == leading
        except RuntimeError:
            fits = False
        fits = fits and token_positions.dim() in (1, len(leading)) and token_positions.shape[-1] == x.shape[-2]
        if not fits:
            raise ValueError(
                f"RotaryPositionalEmbedding: token_positions of shape {tuple(token_positions.shape)} do not fit "
                f"x of shape {tuple(x.shape)}: they must be (T,) with T={x.shape[-2]}, or have one dim per "
                f"leading dim of x, broadcastable to {leading} (for x of shape (B, H, T, d_head) and one row "
                f"of positions per sequence, use (B, 1, T))"
            )
        cos = self.cos[token_positions].to(x.dtype)  # (..., T, d/2)
        sin = self.sin[token_positions].to(x.dtype)
        x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each
        out = torch.empty_like(x)
        out[..., 0::2] = x_even * cos - x_odd * sin
        out[..., 1::2] = x_even * sin + x_odd * cos
        return out

    def extra_repr(self) -> str:
        return f"d_head={self.d_head}, max_seq_len={self.max_seq_len}, theta={self.theta}"
