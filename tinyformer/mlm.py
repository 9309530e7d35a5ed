"""Encoder-only, BERT-style: a masked language model, its masking rule and its loss.

BERT (Devlin et al., 2019) trains a bidirectional encoder by hiding tokens and asking
for them back. The masking rule: choose 15% of the positions; of those, 80% become
[MASK], 10% a random token, 10% stay as they are; the loss is computed on the chosen
positions only. The random and unchanged 10% matter because [MASK] never appears
when the model is used: the model must build a good representation of *every*
token, not only of the masked ones.

Here: the masking rule (:func:`bert_mask`), the loss on the chosen positions
(:func:`masked_lm_loss`) and the model, :class:`MaskedLM` (tinyformer's
:class:`~tinyformer.Encoder` plus an LM head). The chapter trains a tiny one on characters
and compares it with a causal model of the same size, which sees only the left context.

Taught in: Encoder vs decoder vs decoder-only (book/architectures.md)
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Linear
from .model import Encoder, TransformerConfig
from .losses import cross_entropy

__all__ = [
    "IGNORE_INDEX",
    "MASK_TOKEN",
    "bert_mask",
    "masked_lm_loss",
    "MaskedLM",
]

IGNORE_INDEX = -100  # the target of a position the loss skips (F.cross_entropy's default)
MASK_TOKEN = "[MASK]"


def bert_mask(
    tokens: torch.Tensor,
    mask_id: int,
    n_random: int,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
    replace_probs: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule: ``tokens (...)`` -> ``(inputs, targets)``, both ``(...)``.

    Each position is chosen independently with probability ``mask_prob``. A chosen
    position's input becomes ``mask_id`` (80%), a random id in ``[0, n_random)`` (10%),
    or stays (10%), per ``replace_probs``; its target is the original token. Every
    other target is :data:`IGNORE_INDEX`, so the loss skips it.
    """
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if len(replace_probs) != 3 or min(replace_probs) < 0 or abs(sum(replace_probs) - 1.0) > 1e-6:
        raise ValueError(f"replace_probs (mask, random, keep) must be 3 non-negative numbers summing to 1, "
                         f"got {replace_probs}")
    if tokens.dtype.is_floating_point:
        raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
    if n_random <= 0:
        raise ValueError(f"n_random must be positive, got {n_random}")
    chosen = torch.rand(tokens.shape, generator=generator) < mask_prob
    how = torch.rand(tokens.shape, generator=generator)  # one draw decides mask / random / keep
    to_mask = chosen & (how < replace_probs[0])
    to_random = chosen & (how >= replace_probs[0]) & (how < replace_probs[0] + replace_probs[1])
    random_ids = torch.randint(0, n_random, tokens.shape, generator=generator)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_ids.to(tokens.dtype), inputs)
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, targets


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the chosen positions only: ``logits (..., V)``, ``targets (...)``.

    Positions whose target is :data:`IGNORE_INDEX` contribute nothing; the mean is
    over the chosen ones (as ``F.cross_entropy(..., ignore_index=-100)``).
    """
    chosen = targets != IGNORE_INDEX
    if not chosen.any():
        raise ValueError("no position was chosen for the loss (every target is IGNORE_INDEX)")
    return cross_entropy(logits[chosen], targets[chosen])


class MaskedLM(nn.Module):
    """Encoder-only language model: ``token_ids (B, T)`` -> logits ``(B, T, V)``.

    Every position attends to every other (no causal mask), so position t's logits
    use the tokens on both sides of t. Trained with :func:`bert_mask`, they predict
    the original token at the masked positions.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)  # (B, T) -> (B, T, D), bidirectional
        self.lm_head = Linear(config.d_model, config.vocab_size)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.encoder(token_ids))
