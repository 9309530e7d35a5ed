"""What training needs: loss, optimiser, schedule, clipping, batches, checkpoints."""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

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
    "random_starts",
    "windows",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "restore_checkpoint",
    "tensor_checksum",
    "atomic_write_bytes",
    "remove_stale_temp_files",
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


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read, or does not fit the model it is loaded into."""


_CHECKPOINT_FORMAT = "tinyformer-checkpoint-v2"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old file or the new
    one, never half of one: a temporary file in the same folder, fsync, then a rename.

    The file gets the mode an ordinary ``open(path, "w")`` would give (0666 minus the
    umask), not mkstemp's private 0600. A leftover ``.<name>.*.tmp`` from a killed writer
    is removed by :func:`remove_stale_temp_files`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete temporary files that :func:`atomic_write_bytes` left for ``names`` in ``folder``
    (a writer killed mid-write cannot clean up). Returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for name in names:
            for tmp in folder.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _tensors_in(obj, prefix: str = ""):
    """Every tensor in a nested dict/list, with a path name, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _tensors_in(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _tensors_in(item, f"{prefix}/{i}")


def tensor_checksum(obj) -> str:
    """sha256 over every tensor in ``obj`` (name, dtype, shape and raw bytes)."""
    digest = hashlib.sha256()
    for name, t in _tensors_in(obj):
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _describe(target) -> str:
    return str(target) if isinstance(target, (str, os.PathLike)) else getattr(target, "name", "<file object>")


def config_differences(saved: dict, current: dict) -> list[str]:
    """``"field: saved_value vs current_value"`` for each field that differs."""
    return [
        f"{k}: {saved.get(k, '(absent)')!r} vs {current.get(k, '(absent)')!r}"
        for k in sorted(set(saved) | set(current), key=str)
        if saved.get(k, "(absent)") != current.get(k, "(absent)")
    ]


def save_checkpoint(
    path: str | os.PathLike | BinaryIO,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    config: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write model, optimiser, iteration, model config and a checksum of the tensors.

    ``path`` is a file name or a binary file object (``io.BytesIO``, an open file), as for
    ``torch.save``. A file name is written atomically: the bytes go to a temporary file in
    the same folder, which is then renamed over ``path``, so a crash mid-write leaves the
    previous checkpoint intact, never a half-written one. ``config`` defaults to
    ``model.config.to_dict()`` when the model has one, so a loader can check the fit.
    """
    if config is None and hasattr(getattr(model, "config", None), "to_dict"):
        config = model.config.to_dict()
    state = model.state_dict()
    opt_state = optimizer.state_dict() if optimizer is not None else None
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "model": state,
        "optimizer": opt_state,
        "iteration": int(iteration),
        "config": config,
        "extra": extra or {},
        "checksum": tensor_checksum({"model": state, "optimizer": opt_state}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    if hasattr(path, "write"):
        path.write(buffer.getvalue())
        return
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike | BinaryIO,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``:
    no arbitrary code runs), restore ``model`` and ``optimizer`` if given, and
    return the payload dict (``iteration``, ``config``, ``extra`` ...).

    ``path`` is a file name or a binary file object. Raises CheckpointError naming the file
    and the problem for a missing, truncated, corrupt (checksum mismatch) or foreign file,
    one saved from a model with a different config (each differing field is named), or one
    whose tensors do not fit ``model``.
    """
    name = _describe(path)
    if hasattr(path, "read"):
        data = path.read()
    else:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}")
        data = path.read_bytes()
    try:
        with warnings.catch_warnings():  # a damaged file can make torch warn before it fails
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"{name} is not a readable checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        hint = " (written by an older tinyformer: retrain it)" if isinstance(found, str) and found.startswith("tinyformer") else ""
        raise CheckpointError(
            f"{name} is not a tinyformer checkpoint (format {found!r}, expected {_CHECKPOINT_FORMAT!r}){hint}"
        )
    for key, kind in (("model", dict), ("iteration", int), ("extra", dict), ("checksum", str)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{name} is damaged: its {key!r} entry is missing or not a {kind.__name__}")
    if tensor_checksum({"model": payload["model"], "optimizer": payload.get("optimizer")}) != payload["checksum"]:
        raise CheckpointError(f"{name} is corrupt: its tensors do not match the checksum stored with them")
    restore_checkpoint(payload, model, optimizer, name)
    return payload


def restore_checkpoint(payload: dict, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                       name: str = "the checkpoint") -> None:
    """Load a payload returned by :func:`load_checkpoint` into ``model`` and ``optimizer``
    (without reading the file again), with the same checks and messages."""
    if model is not None:
        saved_config = payload.get("config")
        model_config = getattr(model, "config", None)
        if isinstance(saved_config, dict) and hasattr(model_config, "to_dict"):
            diffs = config_differences(saved_config, model_config.to_dict())
            if diffs:
                raise CheckpointError(
                    f"{name} does not fit this model: it was saved from a model with a different config "
                    f"(checkpoint vs model) - " + "; ".join(diffs)
                )
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{name} does not fit this model (saved with config {saved_config}): {exc}") from exc
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise CheckpointError(f"{name} holds no optimizer state to resume from")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{name}: optimizer state does not fit this optimizer: {exc}") from exc


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
