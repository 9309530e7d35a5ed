"""Your turn, chapter "Masks": the causal mask, and attention that respects a mask.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter masks
"""

import math

import torch

# Your own softmax, from attention.py in this folder (the checker imports the folder as a package).
from .attention import softmax


def causal_mask(q_len, k_len=None):
    """Boolean (q_len, k_len) mask, True = may attend: query i may see key j when j <= i.

    k_len defaults to q_len. With k_len > q_len the queries are the *last* q_len positions
    of the keys (as when a KV cache holds the earlier ones): query i is at position
    i + (k_len - q_len).
    """
    raise NotImplementedError


def masked_attention(q, k, v, mask):
    """Scaled dot-product attention in which ``mask`` hides keys.

    q: (..., T_q, d_head), k: (..., T_k, d_head), v: (..., T_k, d_v);
    mask: boolean, broadcastable to (..., T_q, T_k), True = may attend
    ->  (..., T_q, d_v). Each query's weights over the keys it may see still sum to 1.
    """
    raise NotImplementedError
