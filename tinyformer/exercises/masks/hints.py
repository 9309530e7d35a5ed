"""The classic mistakes of chapter "Masks", each a wrong implementation the checker
recognises by its outputs, with the hint it prints."""

import math

import torch

from ..attention.solution import softmax
from ..component import Mistakes

MISTAKES = Mistakes()


@MISTAKES.add(
    "causal_mask", "mask polarity inverted",
    hint="True means *may attend* here (as in F.scaled_dot_product_attention); "
    "nn.MultiheadAttention uses the opposite",
)
def causal_mask_inverted(q_len, k_len=None):
    """True where attention is *blocked* (nn.MultiheadAttention's convention), not allowed."""
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(q_len)[:, None] + (k_len - q_len)
    return ~(torch.arange(k_len)[None, :] <= q_pos)


@MISTAKES.add(
    "causal_mask", "the diagonal is masked",
    hint="a token may attend to itself: j <= i, not j < i",
)
def causal_mask_no_diagonal(q_len, k_len=None):
    """Strictly lower-triangular: a token may not attend to itself."""
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(q_len)[:, None] + (k_len - q_len)
    return torch.arange(k_len)[None, :] < q_pos


@MISTAKES.add(
    "causal_mask", "non-square mask not shifted",
    hint="with k_len > q_len the queries are the last q_len positions: shift the diagonal by k_len - q_len",
)
def causal_mask_unshifted(q_len, k_len=None):
    """torch.tril on a (q_len, k_len) grid: correct when square, but with k_len > q_len the
    queries are the *last* positions, and the diagonal must shift by k_len - q_len."""
    k_len = q_len if k_len is None else k_len
    return torch.ones(q_len, k_len).tril().bool()


@MISTAKES.add(
    "masked_attention", "mask polarity inverted",
    hint="mask is True where attention is *allowed*: fill ~mask with -inf",
)
def masked_attention_inverted(q, k, v, mask):
    """Blocks the keys the mask allows and lets through the ones it blocks."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v


@MISTAKES.add(
    "masked_attention", "mask applied after softmax",
    hint="set the scores to -inf before the softmax, so the allowed weights still sum to 1",
)
def masked_attention_after_softmax(q, k, v, mask):
    """Zeroes the weights after the softmax: the rows no longer sum to 1."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = softmax(scores, dim=-1).masked_fill(~mask, 0.0)
    return weights @ v


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("masked_attention", masked_attention_after_softmax)
