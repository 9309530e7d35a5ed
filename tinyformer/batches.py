"""Training examples from a token stream: random windows and their next-token targets.

    random_starts   where each window of a batch begins (the only random part)
    windows         the inputs at those starts, and the targets one token later
    get_batch       both: a random batch of ``(B, T)`` inputs and targets

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["random_starts", "windows", "get_batch"]


def random_starts(n_tokens: int, batch_size: int, context_length: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch_size`` window starts drawn uniformly (with replacement) from ``[0, n_tokens -
    context_length)``: the random part of :func:`get_batch`, which distributed training draws
    once per global batch and then shares out by rows."""
    if n_tokens < context_length + 1:
        raise ValueError(
            f"need at least context_length + 1 = {context_length + 1} tokens for one window, got {n_tokens}"
        )
    return torch.randint(0, n_tokens - context_length, (batch_size,), generator=generator)


def windows(tokens, starts: torch.Tensor, context_length: int,
            device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(len(starts), T)`` read at ``starts`` and their targets, shifted by one token."""
    array = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens
    starts = starts.tolist()
    x = np.stack([np.asarray(array[s : s + context_length]) for s in starts]).astype(np.int64)
    y = np.stack([np.asarray(array[s + 1 : s + 1 + context_length]) for s in starts]).astype(np.int64)
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def get_batch(
    tokens,
    batch_size: int,
    context_length: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows from a 1-D token array: inputs ``(B, T)`` and targets shifted by one.

    ``tokens`` is a 1-D numpy array (a ``np.memmap`` works: only the windows are
    read) or tensor. ``y[b, t] == x[b, t + 1]``: every position is a
    next-token prediction exercise.
    """
    if getattr(tokens, "ndim", 1) != 1:
        raise ValueError(f"get_batch expects a 1-D token array, got shape {tuple(tokens.shape)}")
    starts = random_starts(len(tokens), batch_size, context_length, generator)
    return windows(tokens, starts, context_length, device)
