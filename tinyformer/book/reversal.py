"""A toy sequence-to-sequence task for the encoder-decoder: reverse a string of digits.

Reversal is the clearest test of cross-attention: to write output position i the
decoder must read source position L - 1 - i, so a trained model's cross-attention
is an anti-diagonal that readers can check by eye.
"""

from __future__ import annotations

import torch

from ..model import ORIGINAL_ARCHITECTURE, EncoderDecoder, TransformerConfig
from ..losses import cross_entropy
from .demo_training import train_steps

__all__ = ["BOS", "reversal_batch", "train_reversal", "greedy_decode", "sequence_accuracy"]

BOS = 10  # token ids 0..9 are digits; 10 starts every target
VOCAB_SIZE = 11


def reversal_batch(batch_size: int, length: int, generator: torch.Generator | None = None):
    """``src (B, L)`` random digits; decoder input ``[BOS, y_0 .. y_{L-2}]``; targets ``y = reversed(src)``."""
    src = torch.randint(0, 10, (batch_size, length), generator=generator)
    target = src.flip(1)
    decoder_in = torch.cat([torch.full((batch_size, 1), BOS), target[:, :-1]], dim=1)
    return src, decoder_in, target


def default_config(length: int) -> TransformerConfig:
    """The original architecture, small: post-LN, sinusoidal positions, ReLU FFN."""
    return TransformerConfig(
        vocab_size=VOCAB_SIZE, context_length=length, d_model=64, n_layers=2, n_heads=4, d_ff=128,
        **ORIGINAL_ARCHITECTURE,
    )


def train_reversal(length: int = 8, steps: int = 400, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                   config: TransformerConfig | None = None, progress: bool = False):
    """Train an EncoderDecoder to reverse digit strings; returns ``(model, losses)``.

    The optimiser's settings are the paper's betas without weight decay; the loop (schedule,
    clipping) is :func:`~tinyformer.book.demo_training.train_steps`.
    """
    torch.manual_seed(seed)
    model = EncoderDecoder(config or default_config(length))
    g = torch.Generator().manual_seed(seed)

    def batches(step):
        src, decoder_in, target = reversal_batch(batch_size, length, g)
        return (src, decoder_in), target

    losses = train_steps(model, batches, cross_entropy, steps, lr, betas=(0.9, 0.98), weight_decay=0.0,
                         desc="encoder-decoder", progress=progress)
    return model, losses


@torch.no_grad()
def greedy_decode(model: EncoderDecoder, src: torch.Tensor) -> torch.Tensor:
    """Write the output one token at a time, feeding back the model's own argmax."""
    out = torch.full((src.shape[0], 1), BOS)
    memory = model.encoder(src)
    for _ in range(src.shape[1]):
        logits = model.decoder(out, memory)[:, -1]
        out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    return out[:, 1:]


def sequence_accuracy(model: EncoderDecoder, length: int, n: int = 1000, seed: int = 12345) -> float:
    """Fraction of ``n`` fresh random strings reversed exactly (every digit right)."""
    src, _, target = reversal_batch(n, length, torch.Generator().manual_seed(seed))
    return (greedy_decode(model, src) == target).all(dim=1).float().mean().item()
