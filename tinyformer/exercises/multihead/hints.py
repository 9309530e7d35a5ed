"""The classic mistakes of chapter "Multi-head attention and the MLP", each a wrong
implementation the checker recognises by its outputs, with the hint it prints."""

import math

import torch.nn.functional as F

from ..attention.solution import softmax
from ..component import Mistakes
from .solution import MultiHeadAttention, SwiGLU

MISTAKES = Mistakes()


@MISTAKES.add(
    "MultiHeadAttention", "heads split with view(B, H, T, d_head)",
    hint="view as (B, T, H, d_head), then transpose(1, 2): each head must get its own d_head columns "
    "of every token",
)
class MultiHeadAttentionWrongSplit(MultiHeadAttention):
    """Splits heads with view(B, H, T, d_head): each "head" then holds pieces of several positions."""

    def split_heads(self, x):
        B, T, D = x.shape
        return x.view(B, self.n_heads, T, self.d_head)

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = softmax(scores, dim=-1) @ v  # (B, H, T, d_head)
        return self.o_proj(out.reshape(B, T, D))  # the inverse of the wrong view


@MISTAKES.add(
    "MultiHeadAttention", "scores divided by √D instead of √d_head",
    hint="each head's dot products have d_head terms: divide by math.sqrt(d_head)",
)
class MultiHeadAttentionScaledByD(MultiHeadAttention):
    """Divides the scores by sqrt(D) (the model width) instead of sqrt(d_head)."""

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = (softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        return self.o_proj(out)


@MISTAKES.add(
    "SwiGLU", "SwiGLU gate and value swapped",
    hint="silu goes on the gate w1(x); the value w3(x) is left linear",
)
class SwiGLUSwapped(SwiGLU):
    """Puts silu on the value branch (w3) instead of the gate (w1)."""

    def forward(self, x):
        return self.w2(self.w1(x) * F.silu(self.w3(x)))


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("MultiHeadAttention", MultiHeadAttentionWrongSplit)
