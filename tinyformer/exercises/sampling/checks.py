"""The checker's view of chapter "Sampling": seeded cases and references for
top_k_distribution and top_p_distribution."""

import torch

import tinyformer as tf

from ..component import Case, Component, generator, randn
from .hints import MISTAKES

_SAMPLING_ATOL = {torch.float32: 1e-6, torch.float64: 1e-6}  # tinyformer samples in float32


def _top_k_cases():
    g = generator(14)
    return [
        Case("logits (B=2, V=10), k=3", (randn(g, 2, 10), 3), dtype=torch.float32),
        Case("logits (B=3, T=4, V=12) float64, k=5, τ=0.7", (randn(g, 3, 4, 12, dtype=torch.float64), 5), {"temperature": 0.7}, dtype=torch.float64),
        Case("logits (1, V=6), k=6 (keeps everything)", (randn(g, 1, 6), 6), dtype=torch.float32),
    ]


def _top_p_cases():
    g = generator(15)
    return [
        Case("logits (B=2, V=10), p=0.9", (randn(g, 2, 10, scale=2.0), 0.9), dtype=torch.float32),
        Case("logits (B=3, V=8) float64, p=0.5, τ=1.3", (randn(g, 3, 8, dtype=torch.float64, scale=2.0), 0.5), {"temperature": 1.3}, dtype=torch.float64),
        Case("logits [5, 0, 0, 0], p=0.3 (the top token alone crosses p)", (torch.tensor([[5.0, 0.0, 0.0, 0.0]]), 0.3), dtype=torch.float32),
    ]


def _tinyformer_sampling(which):
    def reference(case):
        logits, knob = case.args
        return tf.next_token_distribution(logits, case.kwargs.get("temperature", 1.0), **{which: knob})

    return reference


COMPONENTS = [
    Component(
        "top_k_distribution", "sampling", "function", _top_k_cases,
        references={"tinyformer": _tinyformer_sampling("top_k")},
        mistakes=MISTAKES["top_k_distribution"],
        atol=_SAMPLING_ATOL,
    ),
    Component(
        "top_p_distribution", "sampling", "function", _top_p_cases,
        references={"tinyformer": _tinyformer_sampling("top_p")},
        mistakes=MISTAKES["top_p_distribution"],
        atol=_SAMPLING_ATOL,
    ),
]
