"""The checker's view of chapter "Self-attention, by hand": seeded cases and references for
softmax and scaled_dot_product_attention."""

import torch
import torch.nn.functional as F

import tinyformer as tf

from ..component import Case, Component, call, generator, randn
from .hints import MISTAKES


def _softmax_cases():
    g = generator(3)
    return [
        Case("x (B=2, T=3, V=5), dim=-1", (randn(g, 2, 3, 5),), dtype=torch.float32),
        Case("x (4, 6), dim=0", (randn(g, 4, 6),), {"dim": 0}, dtype=torch.float32),
        Case("x (2, 3, 4) float64, dim=1", (randn(g, 2, 3, 4, dtype=torch.float64),), {"dim": 1}, dtype=torch.float64),
        Case("large x (3, 5) ~ ±1000, dim=-1", (randn(g, 3, 5, scale=1000.0),), dtype=torch.float32),
    ]


def _attention_cases():
    g = generator(4)
    return [
        Case("q, k, v (T=4, d_head=8)", (randn(g, 4, 8), randn(g, 4, 8), randn(g, 4, 8)), dtype=torch.float32),
        Case(
            "q (B=2, H=3, T_q=5, d_head=16), k (.., T_k=7, 16), v (.., 7, d_v=8)",
            (randn(g, 2, 3, 5, 16), randn(g, 2, 3, 7, 16), randn(g, 2, 3, 7, 8)),
            dtype=torch.float32,
        ),
        Case(
            "q, k, v (B=2, H=2, T=6, d_head=4) float64",
            tuple(randn(g, 2, 2, 6, 4, dtype=torch.float64) for _ in range(3)),
            dtype=torch.float64,
        ),
    ]


COMPONENTS = [
    Component(
        "softmax", "attention", "function", _softmax_cases,
        references={
            "tinyformer": call(tf.softmax),
            "PyTorch": lambda case: torch.softmax(case.args[0], dim=case.kwargs.get("dim", -1)),
        },
        mistakes=MISTAKES["softmax"],
    ),
    Component(
        "scaled_dot_product_attention", "attention", "function", _attention_cases,
        references={"tinyformer": call(tf.scaled_dot_product_attention), "PyTorch": call(F.scaled_dot_product_attention)},
        mistakes=MISTAKES["scaled_dot_product_attention"],
    ),
]
