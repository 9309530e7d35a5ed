"""The checker's view of chapter "Masks": seeded cases and references for causal_mask and
masked_attention."""

import torch
import torch.nn.functional as F

import tinyformer as tf

from ..component import Case, Component, call, generator, randn
from .hints import MISTAKES


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
        out_dtype=torch.bool,
    ),
    Component(
        "masked_attention", "masks", "function", _masked_attention_cases,
        references={"tinyformer": call(tf.scaled_dot_product_attention), "PyTorch": _masked_attention_pytorch},
        mistakes=MISTAKES["masked_attention"],
    ),
]
