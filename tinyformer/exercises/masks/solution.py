"""Chapter "Masks": the causal mask, and attention that respects a mask."""

import math

import torch

# The earlier chapters' reference pieces (your file imports your own, as the starter does).
from tinyformer.exercises.attention.solution import softmax


def causal_mask(q_len, k_len=None):
    """Boolean (q_len, k_len) mask, True = may attend: query i sees key j when j <= i.

    With k_len > q_len the queries are the *last* q_len positions of the keys (as with a
    KV cache), so query i sits at position i + (k_len - q_len).
    """
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(q_len)[:, None] + (k_len - q_len)  # (q_len, 1)
    k_pos = torch.arange(k_len)[None, :]  # (1, k_len)
    return k_pos <= q_pos


def masked_attention(q, k, v, mask):
    """Scaled dot-product attention where ``mask`` (boolean, True = may attend) hides keys.

    q: (..., T_q, d_head), k: (..., T_k, d_head), v: (..., T_k, d_v),
    mask broadcastable to (..., T_q, T_k)  ->  (..., T_q, d_v).
    The mask goes in *before* the softmax (score -inf, so weight 0), and each row still sums to 1.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores, dim=-1) @ v
