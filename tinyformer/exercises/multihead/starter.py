"""Your turn, chapter "Multi-head attention and the MLP": multi-head attention and SwiGLU.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter multihead

The checker copies tinyformer's weights into your modules by parameter name, so keep the
names and shapes given in each docstring, and add no other parameters (no biases).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import softmax


class MultiHeadAttention(nn.Module):
    """H heads of self-attention, each on its own d_head = D / H slice: x (B, T, D) -> (B, T, D).

    Parameters: q_proj, k_proj, v_proj, o_proj, each nn.Linear(D, D, bias=False).
    Rows h*d_head:(h+1)*d_head of q_proj.weight (and k_proj's, v_proj's) belong to head h.
    forward(x, mask=None): mask is boolean, broadcastable to (B, H, T, T), True = may attend.
    """

    def __init__(self, d_model, n_heads):
        super().__init__()
        raise NotImplementedError

    def forward(self, x, mask=None):
        raise NotImplementedError


class SwiGLU(nn.Module):
    """The gated feed-forward of LLaMA: w2(silu(w1 x) * w3 x), x (..., D) -> (..., D).

    Parameters: w1 (the gate) and w3 (the value), nn.Linear(D, d_ff, bias=False) each;
    w2, nn.Linear(d_ff, D, bias=False).
    """

    def __init__(self, d_model, d_ff):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError
