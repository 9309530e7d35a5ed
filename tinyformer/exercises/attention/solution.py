"""Chapter "Self-attention, by hand": softmax and scaled dot-product attention."""

import math

import torch


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along ``dim``: any shape in, the same shape out.

    Subtract the maximum first: it changes nothing mathematically, and keeps exp()
    from overflowing at large inputs (exp(1000) = inf, and inf / inf = nan).
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(q, k, v):
    """softmax(q k^T / sqrt(d_head)) v.

    q: (..., T_q, d_head), k: (..., T_k, d_head), v: (..., T_k, d_v), where "..." is any
    leading dims, e.g. (B, H)  ->  (..., T_q, d_v).
    Each query's weights are a distribution over the keys: the softmax runs over T_k.
    """
    d_head = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (..., T_q, T_k)
    weights = softmax(scores, dim=-1)  # each row sums to 1
    return weights @ v  # (..., T_q, d_v)
