"""Your turn, chapter "Residuals and normalization": LayerNorm, RMSNorm and a pre-norm block.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter normalization

The checker copies tinyformer's weights into your modules by parameter name, so keep the
names and shapes given in each docstring.
"""

import torch
from torch import nn

# Your own pieces, from the other files in this folder.
from .masks import causal_mask
from .multihead import MultiHeadAttention, SwiGLU


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim: (..., D) -> (..., D).

    mean and var are over the D features of each vector; var is the *biased* variance.
    Parameters: weight (D,), starting at ones, and bias (D,), starting at zeros.
    """

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dim: (..., D) -> (..., D).

    Parameter: weight (D,), starting at ones. No bias.
    """

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError


class TransformerBlock(nn.Module):
    """A pre-norm decoder block: x (B, T, D) -> (B, T, D).

        x = x + self_attn(norm1(x), causal mask)
        x = x + ffn(norm2(x))

    Parameters: norm1 and norm2 (RMSNorm(D)), self_attn (MultiHeadAttention(D, H)),
    ffn (SwiGLU(D, d_ff)).
    """

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError
