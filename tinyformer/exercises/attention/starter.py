"""Your turn, chapter "Self-attention, by hand": softmax and scaled dot-product attention.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter attention
"""

import math

import torch


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along ``dim``: any shape in, the same shape (and dtype) out.

    It must not overflow: softmax of [1000, 999] is [0.731, 0.269], not [nan, nan].
    """
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v):
    """softmax(q k^T / sqrt(d_head)) v.

    q: (..., T_q, d_head), k: (..., T_k, d_head), v: (..., T_k, d_v), where "..." is any
    number of leading dims, e.g. (B, H)  ->  (..., T_q, d_v).
    Each query's weights are one distribution over the T_k keys.
    """
    raise NotImplementedError
