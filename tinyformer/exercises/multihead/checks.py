"""The checker's view of chapter "Multi-head attention and the MLP": seeded cases, weights
and references for MultiHeadAttention and SwiGLU."""

import torch
import torch.nn.functional as F
from torch import nn

import tinyformer as tf

from ..component import Case, Component, generator, randn, seeded_module
from .hints import MISTAKES


def _mha_cases():
    g = generator(6)
    padding = torch.ones(1, 1, 1, 6, dtype=torch.bool)
    padding[..., 4:] = False
    return [
        Case("D=16, H=4; x (B=2, T=5, D), no mask", (randn(g, 2, 5, 16),), init=(16, 4), dtype=torch.float32),
        Case(
            "D=24, H=3; x (B=3, T=4, D) float64, causal mask (T, T)",
            (randn(g, 3, 4, 24, dtype=torch.float64), tf.causal_mask(4)),
            init=(24, 3),
            dtype=torch.float64,
        ),
        Case(
            "D=8, H=2; x (B=1, T=6, D), padding mask (B, 1, 1, T)",
            (randn(g, 1, 6, 8), padding),
            init=(8, 2),
            dtype=torch.float32,
        ),
    ]


def _mha_pytorch(case, ref):
    """nn.MultiheadAttention with the same weights. Its boolean masks mean True = *blocked*."""
    x = case.args[0]
    mask = case.args[1] if len(case.args) > 1 else None
    D, H = case.init
    torch_mha = nn.MultiheadAttention(D, H, bias=False, batch_first=True, dtype=x.dtype)
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(torch.cat([ref.q_proj.weight, ref.k_proj.weight, ref.v_proj.weight]))
        torch_mha.out_proj.weight.copy_(ref.o_proj.weight)
    kwargs = {}
    if mask is not None and mask.dim() == 2:
        kwargs["attn_mask"] = ~mask
    elif mask is not None:
        kwargs["key_padding_mask"] = ~mask[:, 0, 0, :]
    return torch_mha(x, x, x, need_weights=False, **kwargs)[0]


def _mha_tinyformer(case, ref):
    mask = case.args[1] if len(case.args) > 1 else None
    return ref(case.args[0], mask=mask)


def _swiglu_cases():
    g = generator(7)
    return [
        Case("D=16, d_ff=40; x (B=2, T=5, D)", (randn(g, 2, 5, 16),), init=(16, 40), dtype=torch.float32),
        Case("D=8, d_ff=24; x (3, D) float64", (randn(g, 3, 8, dtype=torch.float64),), init=(8, 24), dtype=torch.float64),
    ]


def _swiglu_pytorch(case, ref):
    x = case.args[0]
    return F.linear(F.silu(F.linear(x, ref.w1.weight)) * F.linear(x, ref.w3.weight), ref.w2.weight)


COMPONENTS = [
    Component(
        "MultiHeadAttention", "multihead", "class", _mha_cases,
        references={"tinyformer": _mha_tinyformer, "PyTorch nn.MultiheadAttention": _mha_pytorch},
        mistakes=MISTAKES["MultiHeadAttention"],
        reference_module=seeded_module(lambda D, H: tf.MultiHeadAttention(D, H)),
    ),
    Component(
        "SwiGLU", "multihead", "class", _swiglu_cases,
        references={"tinyformer": None, "PyTorch (F.linear, F.silu)": _swiglu_pytorch},
        mistakes=MISTAKES["SwiGLU"],
        reference_module=seeded_module(lambda D, d_ff: tf.SwiGLU(D, d_ff)),
    ),
]
