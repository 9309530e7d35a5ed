"""The checker's view of chapter "Masks": seeded cases and references for causal_mask and
masked_attention."""

import torch
import torch.nn.functional as F

import tinyformer as tf

from ..component import Case, Component, call, generator, randn
from ..attention.checks import _attention_sizes, _attention_weights_probe
from ..probes import Finding, _with, responds_to
from .hints import MISTAKES


def _diagonal_probe(ctx):
    """Which diagonal the reader's mask keeps: query i should see keys j <= i + (k_len - q_len)."""
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or bool((got == want).all()):
            continue
        q_len, k_len = want.shape
        if bool((got == want.T[:q_len, :k_len]).all()) if q_len == k_len else False:
            return Finding("axis", "your mask is transposed: row i (the query) may see columns j <= i")
        for offset in range(-k_len, k_len + 1):
            if bool((got == torch.ones(q_len, k_len, dtype=torch.bool).tril(offset)).all()):
                right = k_len - q_len
                return Finding("offbyone", f"your mask keeps the diagonal j <= i {offset:+d}; query i sits at position "
                                           f"i + (k_len − q_len), so it is j <= i {right:+d} here ({case.label})")
        if bool((got == ~want).all()):
            return None  # the catalogue names the inverted polarity
    return None


def _no_mask(case):
    q, k, v, mask = case.args
    return _with(case, (q, k, v, torch.ones_like(mask)))


def _causal_mask_cases():
    return [
        Case("q_len=4", (4,)),
        Case("q_len=5, k_len=5", (5, 5)),
        Case("q_len=3, k_len=7 (non-square: queries are the last 3 positions)", (3, 7)),
        Case("q_len=1, k_len=6", (1, 6)),
    ]


def _masked_attention_cases():
    g = generator(5)
    padding = torch.rand(3, 1, 1, 6, generator=g) < 0.6
    padding[..., 0] = True  # every query keeps at least one key
    return [
        Case(
            "q, k, v (B=2, H=3, T=5, d_head=8), causal mask (5, 5)",
            (randn(g, 2, 3, 5, 8), randn(g, 2, 3, 5, 8), randn(g, 2, 3, 5, 8), tf.causal_mask(5)),
            dtype=torch.float32,
        ),
        Case(
            "q (B=2, H=2, T_q=3, d_head=4), k, v (.., T_k=7, 4) float64, causal mask (3, 7)",
            (
                randn(g, 2, 2, 3, 4, dtype=torch.float64),
                randn(g, 2, 2, 7, 4, dtype=torch.float64),
                randn(g, 2, 2, 7, 4, dtype=torch.float64),
                tf.causal_mask(3, 7),
            ),
            dtype=torch.float64,
        ),
        Case(
            "q, k, v (B=3, H=2, T=6, d_head=8), padding mask (B, 1, 1, T)",
            (randn(g, 3, 2, 6, 8), randn(g, 3, 2, 6, 8), randn(g, 3, 2, 6, 8), padding),
            dtype=torch.float32,
        ),
    ]


def _masked_attention_pytorch(case):
    q, k, v, mask = case.args
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


COMPONENTS = [
    Component(
        "causal_mask", "masks", "function", _causal_mask_cases,
        references={
            "tinyformer": call(tf.causal_mask),
            "torch.tril": lambda case: torch.ones(case.args[0], case.args[-1]).tril(case.args[-1] - case.args[0]).bool(),
        },
        mistakes=MISTAKES["causal_mask"],
        probes=[_diagonal_probe],
        out_dtype=torch.bool,
    ),
    Component(
        "masked_attention", "masks", "function", _masked_attention_cases,
        references={"tinyformer": call(tf.scaled_dot_product_attention), "PyTorch": _masked_attention_pytorch},
        mistakes=MISTAKES["masked_attention"],
        probes=[_attention_weights_probe, responds_to("mask", _no_mask, "ignores",
                                                      "your output does not change when the mask changes: is `mask` used?")],
        sizes=_attention_sizes,
        axes={"features": -1, "queries": -2},
    ),
]
