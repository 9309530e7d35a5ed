"""The classic mistakes of chapter "Embeddings and positions", each a wrong implementation the
checker recognises by its outputs, with the hint it prints."""

import torch

from ..component import Mistakes

MISTAKES = Mistakes()


def _sinusoidal(positions, D, halves=False):
    inv_freq = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = positions.to(torch.float64)[:, None] * inv_freq  # (T, D/2)
    if halves:
        return torch.cat([angles.sin(), angles.cos()], dim=-1).float()
    pe = torch.empty(len(positions), D, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.float()


@MISTAKES.add(
    "sinusoidal_positions", "positions off by one",
    hint="the first token is at position 0: torch.arange(T), not arange(1, T + 1)",
)
def sinusoidal_positions_off_by_one(T, D):
    """Counts positions from 1 instead of 0."""
    return _sinusoidal(torch.arange(1, T + 1), D)


@MISTAKES.add(
    "sinusoidal_positions", "sines and cosines in halves instead of interleaved",
    hint="sin goes in the even columns (0::2), cos in the odd ones (1::2)",
)
def sinusoidal_positions_halves(T, D):
    """Puts all the sines in the first D/2 columns and the cosines in the last D/2."""
    return _sinusoidal(torch.arange(T), D, halves=True)


def _rope(x, token_positions, theta, halves):
    d_head = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    angles = token_positions.to(torch.float64)[:, None] * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if halves:  # pairs (x[i], x[i + d/2]), the GPT-NeoX / Hugging Face "rotate_half" layout
        first, second = x[..., : d_head // 2], x[..., d_head // 2 :]
        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


@MISTAKES.add(
    "rope", "RoPE on halves instead of adjacent pairs",
    hint="the book rotates (x[2i], x[2i+1]): x[..., 0::2] and x[..., 1::2], not the two halves of d_head",
)
def rope_halves(x, token_positions, theta=10000.0):
    """Rotates the pairs (x[i], x[i + d_head/2]) instead of the adjacent pairs (x[2i], x[2i+1])."""
    return _rope(x, token_positions, theta, halves=True)


@MISTAKES.add(
    "rope", "positions off by one",
    hint="rotate by the token's own position p (the first token by 0)",
)
def rope_positions_off_by_one(x, token_positions, theta=10000.0):
    """Rotates by position p + 1: the first token is already turned."""
    return _rope(x, token_positions + 1, theta, halves=False)


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("rope", rope_halves)
