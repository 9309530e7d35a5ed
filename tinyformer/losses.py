"""The loss of a language model: cross-entropy of the next token.

    cross_entropy   written from scratch (log-softmax through a stable logsumexp)
    lm_loss         the same loss with an ``impl`` switch: "scratch" (cross_entropy) or "fused" (PyTorch's)

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layers import check_impl

__all__ = ["cross_entropy", "lm_loss"]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``: the from-scratch loss.

    ``logits (..., V)`` and integer ``targets (...)`` -> a scalar. Uses
    log softmax(x)_y = x_y - logsumexp(x), with the max subtracted inside
    logsumexp, so logits of 1e4 neither overflow nor lose the answer.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits (..., V) and targets (...) disagree: logits {tuple(logits.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point:
        raise TypeError(f"targets must be integer class ids, got dtype {targets.dtype}")
    V = logits.shape[-1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= V):
        bad = int(targets.min()) if int(targets.min()) < 0 else int(targets.max())
        raise ValueError(f"unknown target id {bad}: logits cover ids 0..{V - 1}")
    m = logits.amax(dim=-1, keepdim=True)
    logsumexp = m.squeeze(-1) + torch.log(torch.exp(logits - m).sum(dim=-1))
    target_logit = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return (logsumexp - target_logit).mean()


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, impl: str = "scratch") -> torch.Tensor:
    """The training loss, dispatched on ``impl``: mean next-token cross-entropy of ``logits (..., V)``
    against ``targets (...)``, computed by our from-scratch :func:`cross_entropy` (``"scratch"``) or
    by ``F.cross_entropy`` (``"fused"``: one log-softmax kernel and a fused backward). Both give the
    same value (tested); the profiler and benchmarks switch between them."""
    if check_impl(impl) == "scratch":
        return cross_entropy(logits, targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits (..., V) and targets (...) disagree: logits {tuple(logits.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())
