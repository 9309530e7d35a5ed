"""Chapter "Multi-head attention and the MLP": multi-head attention and SwiGLU."""

import math

import torch
import torch.nn.functional as F
from torch import nn

# The earlier chapters' reference pieces (your file imports your own, as the starter does).
from tinyformer.exercises.attention.solution import softmax


class MultiHeadAttention(nn.Module):
    """H heads of self-attention, each on its own d_head = D / H slice: x (B, T, D) -> (B, T, D).

    Parameters (no biases): q_proj, k_proj, v_proj, o_proj, each an nn.Linear(D, D, bias=False).
    Rows h*d_head:(h+1)*d_head of q_proj.weight belong to head h.
    ``mask``: boolean, broadcastable to (B, H, T, T), True = may attend.
    """

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def split_heads(self, x):
        B, T, D = x.shape
        # (B, T, D) -> (B, T, H, d_head) -> (B, H, T, d_head): each head gets its own columns
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q = self.split_heads(self.q_proj(x))  # (B, H, T, d_head)
        k = self.split_heads(self.k_proj(x))
        v = self.split_heads(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = softmax(scores, dim=-1) @ v  # (B, H, T, d_head)
        out = out.transpose(1, 2).reshape(B, T, D)  # concatenate the heads again
        return self.o_proj(out)


class SwiGLU(nn.Module):
    """Gated feed-forward: w2(silu(w1 x) * w3 x), x (..., D) -> (..., D).

    Parameters (no biases): w1 (gate) and w3 (value), nn.Linear(D, d_ff); w2, nn.Linear(d_ff, D).
    """

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)  # gate: goes through silu
        self.w3 = nn.Linear(d_model, d_ff, bias=False)  # value: multiplied by the gate
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
