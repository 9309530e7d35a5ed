"""Weight initialisation schemes, and the two measurements that judge them.

A freshly built model should start (1) predicting close to uniformly, so its first loss is about
ln V, and (2) with a residual stream whose scale neither explodes nor vanishes over depth.

``init="default"`` keeps each module's own initialisation: Glorot-scaled truncated normal for
``Linear`` (std sqrt(2 / (d_in + d_out))) and a unit normal for ``Embedding``. A unit-normal
table is right as an input (the first norm rescales it anyway) but wrong as an output head: a
head whose rows have norm sqrt(D) gives logits of std ~ sqrt(D) and a first loss far above
ln V. So when the head is tied to the embedding, the shared matrix is scaled to std
1 / sqrt(D), the head's fan-in scale: unit-scale logits, and rows of norm ~1 as inputs.

``init="gpt2"`` is GPT-2's (Radford et al., 2019) as in nanoGPT: every Linear and Embedding
N(0, 0.02), biases zero, and each residual branch's output projection (attention ``o_proj``,
feed-forward ``w2``) at 0.02 / sqrt(number of residual branches) -- 0.02 / sqrt(2 n_layers) for a
decoder-only stack -- so the residual stream's variance stays about the same however deep the
stack is. The tied matrix gets N(0, 0.02) once, which suits both roles.

Taught in: The full language model (book/language_model.md)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Embedding, FeedForward, Linear, SwiGLU

__all__ = ["initialize_weights", "residual_projections", "init_statistics", "GPT2_STD"]

GPT2_STD = 0.02


def residual_projections(model: nn.Module) -> list[nn.Module]:
    """The output projection of every residual branch in the model's blocks: attention ``o_proj``
    (self and cross) and the feed-forward's ``w2``."""
    from .blocks import TransformerBlock

    out = []
    for block in model.modules():
        if isinstance(block, TransformerBlock):
            for attn in (block.self_attn, block.cross_attn):
                if attn is not None:
                    out.append(attn.o_proj)
            if isinstance(block.ffn, (FeedForward, SwiGLU)):
                out.append(block.ffn.w2)
    return out


@torch.no_grad()
def initialize_weights(model: nn.Module, config) -> None:
    """Apply ``config.init`` to a freshly built model (see the module docstring).

    ``"default"`` draws no random numbers unless the embeddings are tied, so untied models are
    exactly what the modules' constructors made.
    """
    scheme = getattr(config, "init", "default")
    tied = getattr(config, "tie_embeddings", False) and hasattr(model, "lm_head") and hasattr(model, "embed")
    if scheme == "default":
        if tied:
            shared = model.embed.token_embedding.weight  # (V, D), also lm_head.weight
            shared.mul_(1.0 / math.sqrt(config.d_model))  # unit-normal rows -> std 1/sqrt(D)
        return
    if scheme != "gpt2":
        raise ValueError(f"unknown init {scheme!r}: expected 'default' or 'gpt2'")
    for module in model.modules():
        if isinstance(module, (Linear, nn.Linear)):
            nn.init.normal_(module.weight, mean=0.0, std=GPT2_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (Embedding, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=GPT2_STD)
    projections = residual_projections(model)
    if projections:
        # One branch's output adds variance ~std^2 to the stream; with N branches summed, scaling
        # each by 1/sqrt(N) keeps the total at about what a single branch adds.
        std = GPT2_STD / math.sqrt(len(projections))
        for proj in projections:
            nn.init.normal_(proj.weight, mean=0.0, std=std)


@torch.no_grad()
def init_statistics(model: nn.Module, token_ids: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
    """How a model starts, on ``token_ids (B, T)``: the first loss next to ln V, the logits' std,
    and the residual stream's RMS after the embedding and after each block (activation scale over
    depth). ``targets (B, T)`` default to the next tokens of ``token_ids`` (the last position is
    then left out)."""
    from .losses import cross_entropy

    if targets is None:
        token_ids, targets = token_ids[:, :-1], token_ids[:, 1:]
    rms: list[float] = []

    def record(_module, _inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        rms.append(out.float().pow(2).mean().sqrt().item())

    hooks = [model.embed.register_forward_hook(record)]
    hooks += [block.register_forward_hook(record) for block in model.blocks]
    was_training = model.training
    model.eval()
    try:
        logits = model(token_ids)  # (B, T, V)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    vocab = logits.shape[-1]
    return {
        "initial_loss": cross_entropy(logits.float(), targets).item(),
        "ln_vocab": math.log(vocab),
        "logit_std": logits.float().std().item(),
        "residual_rms": rms,  # [after embedding, after block 1, ..., after block L]
    }
