"""The classic mistakes of chapter "Self-attention, by hand", each a wrong implementation the
checker recognises by its outputs, with the hint it prints."""

import math

import torch

from ..component import Mistakes
from .solution import softmax

MISTAKES = Mistakes()


@MISTAKES.add(
    "softmax", "softmax without subtracting the max (overflows at large inputs)",
    hint="subtract x.amax(dim, keepdim=True) before exp()",
)
def softmax_no_max_shift(x, dim=-1):
    """exp(x) / sum(exp(x)) without subtracting the max: exp overflows to inf at large x."""
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


@MISTAKES.add(
    "softmax", "softmax over the wrong axis",
    hint="normalise along the `dim` you are given",
)
def softmax_ignores_dim(x, dim=-1):
    """Always normalises the last axis, whatever ``dim`` asks for."""
    return torch.softmax(x, dim=-1)


@MISTAKES.add(
    "scaled_dot_product_attention", "scores not divided by √d_head",
    hint="divide q @ k^T by math.sqrt(q.shape[-1])",
)
def attention_unscaled(q, k, v):
    """Forgets to divide the scores by sqrt(d_head)."""
    return softmax(q @ k.transpose(-2, -1), dim=-1) @ v


@MISTAKES.add(
    "scaled_dot_product_attention", "softmax over the wrong axis",
    hint="each query's row of scores is one distribution over the keys: softmax(dim=-1)",
)
def attention_softmax_over_queries(q, k, v):
    """Normalises each column (over the queries, dim=-2) instead of each row (over the keys)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return softmax(scores, dim=-2) @ v


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("scaled_dot_product_attention", attention_unscaled)
