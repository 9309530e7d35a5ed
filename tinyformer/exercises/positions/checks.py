"""The checker's view of chapter "Embeddings and positions": seeded cases and references for
sinusoidal_positions and rope."""

import torch

import tinyformer as tf

from ..component import Case, Component, generator, randn
from .hints import MISTAKES

_FLOAT32_TABLES = {torch.float32: 1e-5, torch.float64: 1e-6}  # tinyformer keeps cos/sin tables in float32


def _sinusoidal_cases():
    return [Case(f"T={T}, D={D}", (T, D)) for T, D in [(4, 8), (16, 32), (1, 2), (50, 64)]]


def _rope_cases():
    g = generator(2)
    return [
        Case("x (T=6, d_head=8), positions 0..5", (randn(g, 6, 8), torch.arange(6)), dtype=torch.float32),
        Case(
            "x (B=2, H=3, T=5, d_head=16), positions 0..4",
            (randn(g, 2, 3, 5, 16), torch.arange(5)),
            dtype=torch.float32,
        ),
        Case(
            "x (B=2, T=4, d_head=8) float64, positions 3..6, theta=500",
            (randn(g, 2, 4, 8, dtype=torch.float64), torch.arange(3, 7)),
            {"theta": 500.0},
            dtype=torch.float64,
        ),
    ]


def _tinyformer_rope(case):
    x, positions = case.args
    theta = case.kwargs.get("theta", 10000.0)
    return tf.RotaryPositionalEmbedding(x.shape[-1], int(positions.max()) + 1, theta)(x, positions)


COMPONENTS = [
    Component(
        "sinusoidal_positions", "positions", "function", _sinusoidal_cases,
        references={"tinyformer": lambda case: tf.sinusoidal_positional_encoding(*case.args)},
        mistakes=MISTAKES["sinusoidal_positions"],
        atol={torch.float32: 1e-6},
    ),
    Component(
        "rope", "positions", "function", _rope_cases,
        references={"tinyformer": _tinyformer_rope},
        mistakes=MISTAKES["rope"],
        atol=_FLOAT32_TABLES,
    ),
]
