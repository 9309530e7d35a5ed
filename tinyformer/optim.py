"""How the weights move: the optimiser, its learning-rate schedule and gradient clipping.

    AdamW               Adam with decoupled weight decay, written from scratch
    param_groups        which parameters are decayed (matrices) and which are not (norms, biases)
    make_optimizer      AdamW over those groups: "scratch" (ours) or "fused" (torch.optim.AdamW, foreach)
    cosine_lr_schedule  linear warmup, then cosine decay to a floor
    clip_grad_norm      global-norm gradient clipping, written from scratch
    clip_gradients      the same with an ``impl`` switch: "scratch" (clip_grad_norm) or "fused" (PyTorch's)

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .layers import Embedding, LayerNorm, RMSNorm, check_impl

__all__ = ["AdamW", "param_groups", "make_optimizer", "cosine_lr_schedule", "clip_grad_norm", "clip_gradients"]


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    For each parameter p with gradient g, at step t:
        p <- p * (1 - lr * weight_decay)          # decay, not folded into g
        m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    The same arithmetic, in the same order, as ``torch.optim.AdamW``.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                # A plain Python number: reading a tensor step back with .item() for every
                # parameter at every step costs a round trip each time (a sync on a GPU).
                state["step"] = t = float(state["step"]) + 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                bias_correction1 = 1 - b1**t
                bias_correction2_sqrt = math.sqrt(1 - b2**t)
                denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
                p.addcdiv_(m, denom, value=-lr / bias_correction1)
        return loss


_NO_DECAY_KINDS = ("norm", "bias", "embedding")


def _norm_types() -> tuple[type, ...]:
    return (LayerNorm, RMSNorm, nn.LayerNorm, nn.RMSNorm)


def _embedding_types() -> tuple[type, ...]:
    return (Embedding, nn.Embedding)


def param_groups(model: nn.Module, weight_decay: float, no_decay_on: Iterable[str] = ("norm", "bias")) -> list[dict]:
    """Split the trainable parameters into a decayed and an undecayed group for AdamW.

    Weight decay pulls weights toward zero. That is a prior on the matrices that mix features,
    not on a norm's gain (whose neutral value is 1, not 0) or on a bias (a shift that does not
    multiply anything); decaying those only fights the norm. ``no_decay_on`` names what is left
    undecayed, from ``"norm"`` (gains and biases of LayerNorm/RMSNorm), ``"bias"`` (every bias)
    and ``"embedding"`` (embedding tables; a table tied to the LM head counts as an embedding).
    The default, ``("norm", "bias")``, decays exactly the 2-D weights, as GPT-2 recipes do.

    Returns ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...], "weight_decay": 0.0}]``
    in ``model.parameters()`` order, each tensor once (tied tensors are shared, not repeated).
    """
    no_decay_on = tuple(no_decay_on)
    unknown = sorted(set(no_decay_on) - set(_NO_DECAY_KINDS))
    if unknown:
        raise ValueError(f"unknown no_decay_on entries {unknown}: allowed are {_NO_DECAY_KINDS}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    skip: set[int] = set()
    for module in model.modules():
        own = list(module.named_parameters(recurse=False))
        for name, p in own:
            if "norm" in no_decay_on and isinstance(module, _norm_types()):
                skip.add(id(p))
            if "bias" in no_decay_on and (name == "bias" or name.endswith("_bias")):
                skip.add(id(p))
            if "embedding" in no_decay_on and isinstance(module, _embedding_types()):
                skip.add(id(p))
    decay, no_decay = [], []
    for p in model.parameters():  # unique tensors, so a tied matrix appears once
        if p.requires_grad:
            (no_decay if id(p) in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    no_decay_on: Iterable[str] = ("norm", "bias"),
    impl: str = "scratch",
) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`, dispatched on ``impl``: our from-scratch :class:`AdamW` (``impl="scratch"``) or
    ``torch.optim.AdamW`` with its multi-tensor ``foreach`` implementation (``impl="fused"``),
    which updates all tensors of a group with a handful of kernels instead of a Python loop.
    Both do the same arithmetic (tested)."""
    groups = param_groups(model, weight_decay, no_decay_on)
    if check_impl(impl) == "scratch":
        return AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True)


def cosine_lr_schedule(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_iters: int) -> float:
    """Linear warmup to ``max_lr``, cosine decay to ``min_lr`` at ``cosine_iters``, then flat.

    ``it`` counts updates from 0 (the training loop's first step is ``it = 0``):

        it < warmup_iters:                 max_lr * (it + 1) / (warmup_iters + 1)
        warmup_iters <= it <= cosine_iters: min_lr + (1 + cos(pi * progress)) / 2 * (max_lr - min_lr)
        it > cosine_iters:                  min_lr

    The warmup is the straight line that would reach 0 one step before the first update
    and ``max_lr`` at ``warmup_iters``, so the first update already moves the weights
    (a warmup of ``max_lr * it / warmup_iters`` spends step 1 at lr = 0).
    """
    if warmup_iters < 0 or cosine_iters < warmup_iters:
        raise ValueError(
            f"need 0 <= warmup_iters <= cosine_iters, got warmup_iters={warmup_iters}, cosine_iters={cosine_iters}"
        )
    if it < warmup_iters:
        return max_lr * (it + 1) / (warmup_iters + 1)
    if it > cosine_iters:
        return min_lr
    if cosine_iters == warmup_iters:
        return max_lr
    progress = (it - warmup_iters) / (cosine_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``: the
    from-scratch clipping (:func:`clip_gradients` switches between it and PyTorch's).

    Parameters without a gradient are skipped. Returns the norm before clipping.
    Clipping the *global* norm keeps the update's direction; clipping each
    tensor alone would bend it.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    scale = torch.clamp(max_norm / (total + eps), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return total


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float, impl: str = "scratch") -> torch.Tensor:
    """Global-norm clipping, dispatched on ``impl``: our from-scratch :func:`clip_grad_norm`
    (``"scratch"``) or ``torch.nn.utils.clip_grad_norm_`` with ``foreach=True`` (``"fused"``: one
    multi-tensor norm instead of a Python sum). Returns the norm before clipping."""
    if check_impl(impl) == "scratch":
        return clip_grad_norm(parameters, max_norm)
    return torch.nn.utils.clip_grad_norm_(list(parameters), max_norm, foreach=True)
