"""The residual-connection ablation of "Residuals and normalization": the same stack with and without ``x +``.

The library's :class:`~tinyformer.blocks.TransformerBlock` always adds its input back. This
experiment needs the same parts without that addition, so it composes the library's own modules
(a block's norms, attention and feed-forward) in a forward pass that can leave the residual out:

    with residuals (the library's pre-norm block)   x = x + attn(norm1(x));  x = x + ffn(norm2(x))
    without                                         x = attn(norm1(x));      x = ffn(norm2(x))

Everything else (embedding, initialisation, final norm, head, data, optimiser) is shared, so the
two models differ in the residual connections alone. The library is not changed: the book's
cached runs stay valid.
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import TransformerBlock
from ..model import TransformerConfig, TransformerLM

__all__ = ["block_forward", "AblationLM", "layer_grad_norms"]


def block_forward(block: TransformerBlock, x: torch.Tensor, residual: bool = True) -> torch.Tensor:
    """One pre-norm library block ``(B, T, D) -> (B, T, D)``, with or without its two residual connections.

    With ``residual=True`` this is exactly ``block(x)``; without, the plain composition
    ``ffn(norm2(attn(norm1(x))))``: the same parts, nothing added back.
    """
    if block.norm_position != "pre" or block.cross_attn is not None:
        raise ValueError("block_forward composes a pre-norm block without cross-attention "
                         f"(got norm_position={block.norm_position!r}, cross_attention={block.cross_attn is not None})")
    h = block.self_attn(block.norm1(x))
    x = x + h if residual else h
    h = block.ffn(block.norm2(x))
    return x + h if residual else h


class AblationLM(nn.Module):
    """A :class:`~tinyformer.model.TransformerLM` (its parameters, its initialisation) run with or
    without the residual connections: ``token_ids (B, T)`` -> logits ``(B, T, V)``.

    ``AblationLM(config, residual=True)`` computes what ``TransformerLM(config)`` computes with the
    same weights; the seed before construction fixes the weights, so two models built after the
    same ``torch.manual_seed`` start from identical parameters.
    """

    def __init__(self, config: TransformerConfig, residual: bool):
        super().__init__()
        if config.norm_position != "pre":
            raise ValueError(f"the ablation drops residuals from pre-norm blocks, got norm_position={config.norm_position!r}")
        self.lm = TransformerLM(config)
        self.residual = residual

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        x = self.lm.embed(token_ids)
        for block in self.lm.blocks:
            x = block_forward(block, x, self.residual)
        return self.lm.lm_head(self.lm.final_norm(x))


def layer_grad_norms(model: AblationLM) -> torch.Tensor:
    """The L2 norm of each block's gradient (all its parameters together), layer 1 first: ``(L,)``."""
    norms = []
    for block in model.lm.blocks:
        grads = [p.grad.flatten() for p in block.parameters() if p.grad is not None]
        if not grads:
            raise ValueError("no gradients yet: call backward() before layer_grad_norms")
        norms.append(torch.cat(grads).norm())
    return torch.stack(norms)
