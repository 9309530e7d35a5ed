"""Chapter "Residuals and normalization": LayerNorm, RMSNorm and a pre-norm block."""

import torch
from torch import nn

# The earlier chapters' reference pieces (your file imports your own, as the starter does).
from tinyformer.exercises.masks.solution import causal_mask
from tinyformer.exercises.multihead.solution import MultiHeadAttention, SwiGLU


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim: (..., D) -> (..., D).

    var is the *biased* variance (divide by D, not D - 1), and eps sits inside the root.
    Parameters: weight (D,) and bias (D,).
    """

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dim: (..., D) -> (..., D).

    No mean is subtracted and there is no bias. Parameter: weight (D,).
    """

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        rms = torch.sqrt((x**2).mean(dim=-1, keepdim=True) + self.eps)
        return x / rms * self.weight


class TransformerBlock(nn.Module):
    """A pre-norm decoder block: x (B, T, D) -> (B, T, D).

        x = x + self_attn(norm1(x), causal mask)
        x = x + ffn(norm2(x))

    Parameters: norm1, norm2 (RMSNorm), self_attn (MultiHeadAttention), ffn (SwiGLU).
    """

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.norm2 = RMSNorm(d_model)
        self.ffn = SwiGLU(d_model, d_ff)

    def forward(self, x):
        T = x.shape[1]
        mask = causal_mask(T).to(x.device)  # (T, T): no peeking at later tokens
        x = x + self.self_attn(self.norm1(x), mask)
        x = x + self.ffn(self.norm2(x))
        return x
