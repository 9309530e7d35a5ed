"""The training loop of the chapters' small demos (the reversal task, the masked-LM comparison).

The book's real runs use the library's training command (``python -m tinyformer.train``); these
demos train a model in seconds inside a chapter, so one short loop serves them all: AdamW,
a cosine schedule with a warm-up of a tenth of the steps, gradients clipped at 1.0, one loss
per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..optim import AdamW, clip_grad_norm, cosine_lr_schedule

__all__ = ["train_steps"]

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]  # (the model's inputs, the targets)


def train_steps(
    model: nn.Module,
    batches: Callable[[int], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int,
    lr: float,
    *,
    betas: tuple[float, float],
    weight_decay: float,
    desc: str,
    progress: bool = False,
    after_backward: Callable[[int], None] | None = None,
) -> list[float]:
    """Train ``model`` for ``steps`` steps and return the loss of each; leaves it in eval mode.

    ``batches(step)`` returns ``(inputs, targets)``: the model is called as ``model(*inputs)``
    and scored with ``loss_fn(logits, targets)``. The learning rate warms up over the first
    ``steps // 10`` steps to ``lr``, then follows a cosine down to ``lr / 10``. ``desc`` names
    the progress bar shown when ``progress`` is true. ``after_backward(step)``, when given, is
    called once the step's gradients are computed and before they are clipped (to record them).
    """
    optimizer = AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    iterator = range(steps)
    if progress:
        # Imported only when a bar is wanted: in a kernel without ipywidgets, importing
        # tqdm.auto writes a TqdmWarning to stderr, which the strict book build refuses.
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=desc, unit="step")
    losses = []
    model.train()
    for step in iterator:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr_schedule(step, lr, lr / 10, steps // 10, steps)
        inputs, targets = batches(step)
        loss = loss_fn(model(*inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
