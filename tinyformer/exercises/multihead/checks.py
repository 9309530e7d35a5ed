"""The checker's view of chapter "Multi-head attention and the MLP": seeded cases, weights
and references for MultiHeadAttention and SwiGLU."""

import torch
import torch.nn.functional as F
from torch import nn

import tinyformer as tf

from ..component import Case, Component, generator, randn, seeded_module
from ..attention.checks import scale_finding, weights_finding
from ..probes import Finding, _edited_run, _with, ablate, causal, variant
from .hints import MISTAKES


def _identity_values(module):
    """v_proj = o_proj = I, and q_proj, k_proj block-diagonal (head h reads only x's own d_head
    columns): then head h's output columns are its weights @ x's own columns, and nothing else."""
    D = module.v_proj.weight.shape[0]
    eye = torch.eye(D, dtype=module.v_proj.weight.dtype)
    module.v_proj.weight.copy_(eye)
    module.o_proj.weight.copy_(eye)
    d_head = module.d_head if hasattr(module, "d_head") else D // module.n_heads
    blocks = torch.block_diag(*[torch.ones(d_head, d_head)] * (D // d_head)).to(eye.dtype)
    module.q_proj.weight.mul_(blocks)
    module.k_proj.weight.mul_(blocks)


def _short(case):
    """The case cut to T' = min(T, d_head) positions, so each head's x slice has a right inverse."""
    x, *rest = case.args
    D, H = case.init
    t = min(x.shape[1], D // H)
    mask = rest[0] if rest else None
    if mask is not None:
        mask = mask[:t, :t] if mask.dim() == 2 else mask[..., :t]
    return _with(case, (x[:, :t], *([mask] if mask is not None else [])))


def _mha_weights_probe(ctx):
    """Read each head's attention weights out of the reader's module (v and o projections set
    to the identity) and test them as scaled_dot_product_attention's are tested."""
    factors = []
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        if ctx.close(case, got, want):
            continue
        short = _short(case)
        mine, ref = _edited_run(ctx, short, _identity_values, "v = o = I")
        x = short.args[0].double()
        D, H = case.init
        B, t, _ = x.shape
        heads = lambda t_: t_.double().view(B, t, H, D // H).transpose(1, 2)  # (B, H, t, d_head)
        xh, mh, rh = heads(x), heads(mine), heads(ref)
        # Head 0's columns of x changed: with block-diagonal projections only head 0's output may move.
        poked = x.clone()
        poked[..., : D // H] += 1.0
        moved, _ = _edited_run(ctx, _with(short, (poked.to(short.args[0].dtype), *short.args[1:])), _identity_values, "poked")
        others = lambda t_: t_.double()[..., D // H:]
        if torch.isfinite(mine).all() and not torch.allclose(others(moved), others(mine), atol=1e-6):
            return Finding("axis", "changing head 0's columns of x changes your other heads' outputs: each head must see "
                                   "only its own d_head columns: (B, T, D) -> (B, T, H, d_head) -> (B, H, T, d_head)")
        inverse = torch.linalg.pinv(xh)  # (B, H, d_head, t)
        w_mine, w_ref = mh @ inverse, rh @ inverse
        w_mine = torch.where(torch.isfinite(mh).all(-1, keepdim=True), w_mine, torch.nan)
        if torch.isfinite(mh).all() and not torch.allclose(w_mine @ xh, mh, atol=1e-4):
            return Finding("axis", "your heads are not each attention over their own d_head columns: split (B, T, D) "
                                   "-> (B, T, H, d_head) -> (B, H, T, d_head), and merge back the same way")
        mask = short.args[1] if len(short.args) > 1 else None
        finding, factor = weights_finding(w_mine, w_ref, mask, {"d_head": D // H, "D": D, "H": H}, case.label)
        if finding is not None:
            if finding.kind == "locate":
                return Finding("locate", "each head's attention weights are right: the mistake is after them "
                                         "(weights @ v, merging the heads, o_proj)")
            return finding
        if factor is None:
            return None
        factors.append(factor)
    return scale_finding(factors)


def _zero(*names):
    def edit(module):
        for name in names:
            module.get_parameter(name).zero_()

    return edit


def _double(name):
    def edit(module):
        module.get_parameter(name).mul_(2.0)

    return edit


def _swiglu_with(activation):
    def make(case):
        from ..checker import _reference_module

        ref = _reference_module(COMPONENTS[1], case)
        x = case.args[0]
        return F.linear(activation(F.linear(x, ref.w1.weight)) * F.linear(x, ref.w3.weight), ref.w2.weight)

    return make


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
        probes=[_mha_weights_probe, causal()],
        reference_module=seeded_module(lambda D, H: tf.MultiHeadAttention(D, H)),
    ),
    Component(
        "SwiGLU", "multihead", "class", _swiglu_cases,
        references={"tinyformer": None, "PyTorch (F.linear, F.silu)": _swiglu_pytorch},
        mistakes=MISTAKES["SwiGLU"],
        probes=[
            ablate(_zero("w3.weight"), "with w3 = 0 your output should be 0 (the value w3·x multiplies the gate), "
                                       "and it is not", when_right=False),
            ablate(_zero("w1.weight"), "with w1 = 0 the gate silu(0) = 0 closes every unit, and yours does not: "
                                       "the gate is silu(w1·x)", when_right=False),
            ablate(_double("w3.weight"), "doubling w3 should double your output (silu(w1·x) * w3·x), and it does "
                                         "not: multiply gate and value", when_right=False),
            variant("invariant", _swiglu_with(F.relu), "your gate is relu(w1·x); SwiGLU's is silu(w1·x) = w1·x · σ(w1·x)"),
            variant("invariant", _swiglu_with(F.gelu), "your gate is gelu(w1·x); SwiGLU's is silu(w1·x) = w1·x · σ(w1·x)"),
            variant("invariant", _swiglu_with(torch.sigmoid), "your gate is σ(w1·x); SwiGLU's is silu(w1·x) = w1·x · σ(w1·x)"),
        ],
        reference_module=seeded_module(lambda D, d_ff: tf.SwiGLU(D, d_ff)),
    ),
]
