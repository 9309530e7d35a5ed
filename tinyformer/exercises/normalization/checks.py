"""The checker's view of chapter "Residuals and normalization": seeded cases, weights and
references for LayerNorm, RMSNorm and TransformerBlock."""

import torch
import torch.nn.functional as F

import tinyformer as tf

from ..component import DEEP, Case, Component, generator, randn, seeded_module
from .hints import MISTAKES


def _norm_cases():
    g = generator(8)
    return [
        Case("D=8; x (B=2, T=5, D)", (randn(g, 2, 5, 8) + 0.5,), init=(8,), dtype=torch.float32),
        Case("D=16; x (3, D) float64", (randn(g, 3, 16, dtype=torch.float64) - 1.0,), init=(16,), dtype=torch.float64),
        Case("D=8; x (4, D) of tiny spread (variance ~ 1e-6 < eps)", (randn(g, 4, 8, scale=1e-3),), init=(8,), dtype=torch.float32),
    ]


def _layer_norm_pytorch(case, ref):
    return F.layer_norm(case.args[0], ref.weight.shape, ref.weight, ref.bias, ref.eps)


def _rms_norm_pytorch(case, ref):
    return F.rms_norm(case.args[0], ref.weight.shape, ref.weight, ref.eps)


def _block_cases():
    g = generator(9)
    return [
        Case("D=16, H=4, d_ff=32; x (B=2, T=5, D)", (randn(g, 2, 5, 16),), init=(16, 4, 32), dtype=torch.float32),
        Case("D=8, H=2, d_ff=24; x (B=1, T=4, D) float64", (randn(g, 1, 4, 8, dtype=torch.float64),), init=(8, 2, 24), dtype=torch.float64),
    ]


def _tinyformer_block(d_model, n_heads, d_ff):
    return tf.TransformerBlock(
        d_model, n_heads, d_ff, causal=True, norm="rms", norm_position="pre", ffn="swiglu", bias=False
    )


COMPONENTS = [
    Component(
        "LayerNorm", "normalization", "class", _norm_cases,
        references={"tinyformer": None, "PyTorch F.layer_norm": _layer_norm_pytorch},
        mistakes=MISTAKES["LayerNorm"],
        reference_module=seeded_module(lambda D: tf.LayerNorm(D)),
    ),
    Component(
        "RMSNorm", "normalization", "class", _norm_cases,
        references={"tinyformer": None, "PyTorch F.rms_norm": _rms_norm_pytorch},
        mistakes=MISTAKES["RMSNorm"],
        reference_module=seeded_module(lambda D: tf.RMSNorm(D)),
    ),
    Component(
        "TransformerBlock", "normalization", "class", _block_cases,
        references={"tinyformer": None},
        mistakes=MISTAKES["TransformerBlock"],
        atol=DEEP,
        reference_module=seeded_module(_tinyformer_block),
    ),
]
