"""What training needs: loss, optimiser, schedule, clipping, batches, checkpoints."""

from __future__ import annotations

import io
import math
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "cross_entropy",
    "AdamW",
    "cosine_lr_schedule",
    "clip_grad_norm",
    "get_batch",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "param_groups",
    "make_optimizer",
    "lm_loss",
    "clip_gradients",
]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

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


def cosine_lr_schedule(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_iters: int) -> float:
    """Linear warmup to ``max_lr``, cosine decay to ``min_lr`` at ``cosine_iters``, then flat.

        it < warmup_iters:                 max_lr * it / warmup_iters
        warmup_iters <= it <= cosine_iters: min_lr + (1 + cos(pi * progress)) / 2 * (max_lr - min_lr)
        it > cosine_iters:                  min_lr
    """
    if warmup_iters < 0 or cosine_iters < warmup_iters:
        raise ValueError(
            f"need 0 <= warmup_iters <= cosine_iters, got warmup_iters={warmup_iters}, cosine_iters={cosine_iters}"
        )
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    if it > cosine_iters:
        return min_lr
    if cosine_iters == warmup_iters:
        return max_lr
    progress = (it - warmup_iters) / (cosine_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

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
    n = len(tokens)
    if getattr(tokens, "ndim", 1) != 1:
        raise ValueError(f"get_batch expects a 1-D token array, got shape {tuple(tokens.shape)}")
    if n < context_length + 1:
        raise ValueError(
            f"need at least context_length + 1 = {context_length + 1} tokens for one window, got {n}"
        )
    starts = torch.randint(0, n - context_length, (batch_size,), generator=generator).tolist()
    array = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens
    x = np.stack([np.asarray(array[s : s + context_length]) for s in starts]).astype(np.int64)
    y = np.stack([np.asarray(array[s + 1 : s + 1 + context_length]) for s in starts]).astype(np.int64)
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read, or does not fit the model it is loaded into."""


_CHECKPOINT_FORMAT = "tinyformer-checkpoint-v1"


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    config: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write model, optimiser, iteration and config to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is then renamed
    over ``path``: a crash mid-write leaves the previous checkpoint intact,
    never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iteration": int(iteration),
        "config": config,
        "extra": extra or {},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``:
    no arbitrary code runs), restore ``model`` and ``optimizer`` if given, and
    return the payload dict (``iteration``, ``config``, ``extra`` ...).

    Raises CheckpointError naming the file and the problem for a missing,
    truncated, corrupt or foreign file, or one whose tensors do not fit ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
        with warnings.catch_warnings():  # a damaged file can make torch warn before it fails
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a tinyformer checkpoint (missing format tag {_CHECKPOINT_FORMAT!r})")
    if model is not None:
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} does not fit this model (saved with config {payload.get('config')}): {exc}"
            ) from exc
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise CheckpointError(f"{path} holds no optimizer state to resume from")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer state does not fit this optimizer: {exc}") from exc
    return payload


_NO_DECAY_KINDS = ("norm", "bias", "embedding")


def _norm_types() -> tuple[type, ...]:
    from .layers import LayerNorm, RMSNorm

    return (LayerNorm, RMSNorm, nn.LayerNorm, nn.RMSNorm)


def _embedding_types() -> tuple[type, ...]:
    from .layers import Embedding

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
    """AdamW over :func:`param_groups`: our own :class:`AdamW` (``impl="scratch"``) or
    ``torch.optim.AdamW`` with its multi-tensor ``foreach`` implementation (``impl="fused"``),
    which updates all tensors of a group with a handful of kernels instead of a Python loop.
    Both do the same arithmetic (tested)."""
    groups = param_groups(model, weight_decay, no_decay_on)
    if impl == "scratch":
        return AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if impl == "fused":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True)
    raise ValueError(f"unknown impl {impl!r}: expected 'scratch' or 'fused'")


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, impl: str = "scratch") -> torch.Tensor:
    """Mean next-token cross-entropy of ``logits (..., V)`` against ``targets (...)``: our
    :func:`cross_entropy` (``"scratch"``) or ``F.cross_entropy`` (``"fused"``: one log-softmax
    kernel and a fused backward)."""
    if impl == "scratch":
        return cross_entropy(logits, targets)
    if impl == "fused":
        if logits.shape[:-1] != targets.shape:
            raise ValueError(
                f"logits (..., V) and targets (...) disagree: logits {tuple(logits.shape)}, "
                f"targets {tuple(targets.shape)}"
            )
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())
    raise ValueError(f"unknown impl {impl!r}: expected 'scratch' or 'fused'")


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float, impl: str = "scratch") -> torch.Tensor:
    """Global-norm clipping: our :func:`clip_grad_norm` or ``torch.nn.utils.clip_grad_norm_``
    with ``foreach=True`` (one multi-tensor norm instead of a Python sum). Returns the norm
    before clipping."""
    if impl == "scratch":
        return clip_grad_norm(parameters, max_norm)
    if impl == "fused":
        return torch.nn.utils.clip_grad_norm_(list(parameters), max_norm, foreach=True)
    raise ValueError(f"unknown impl {impl!r}: expected 'scratch' or 'fused'")
