"""The checker's view of chapter "Residuals and normalization": seeded cases, weights and
references for LayerNorm, RMSNorm and TransformerBlock."""

import torch
import torch.nn.functional as F

import tinyformer as tf

from ..component import DEEP, Case, Component, generator, randn, seeded_module
from ..probes import Finding, ablate, causal, family, name_factor
from .hints import MISTAKES


def _statistics_probe(rms: bool):
    """Undo weight (and bias) with the reference module's own values and test what is left:
    mean 0 and variance 1 per row (LayerNorm), mean of squares 1 (RMSNorm)."""

    def probe(ctx):
        from ..checker import _reference_module

        for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
            x = case.args[0].double()
            if ctx.close(case, got, want) or got.shape != want.shape or float(x.var(-1).min()) < 1e-3:
                continue
            ref = _reference_module(ctx.component, case)
            z = got.double() if rms else got.double() - ref.bias.detach().double()
            z = z / ref.weight.detach().double()
            D = x.shape[-1]
            sizes = {"D": D, "D−1": D - 1}
            if not rms:
                mean = z.mean(-1)
                if not torch.allclose(mean, torch.zeros_like(mean), atol=1e-4):
                    return Finding("invariant", "before weight and bias, each of your rows should have mean 0, and yours "
                                                f"have {float(mean.abs().max()):.3g}: subtract the row's mean over the last dim")
                second = (z**2).mean(-1)
                what = "variance"
            else:
                second = (z**2).mean(-1)
                what = "mean square"
            if not torch.allclose(second, torch.ones_like(second), rtol=1e-3):
                c = float(second.median())
                ok = torch.allclose(second, torch.full_like(second, c), rtol=1e-3)
                names = name_factor(c, sizes) if ok else []
                said = f"{c:.4g} = {names[0].split(' ', 1)[1]}" if names and names[0].startswith("×") else (
                    f"{c:.4g}" if ok else "not 1, and varies by row")
                return Finding("invariant", f"before weight{'' if rms else ' and bias'}, the {what} of each of your rows "
                                            f"should be 1, and it is {said}: divide by √(mean over the last dim + ε)")
            ok = torch.allclose(got.double(), want.double(), rtol=1e-4, atol=1e-4)
            return Finding("locate", "your normalised rows are right (mean 0, variance 1): the mistake is in how "
                                     "weight" + ("" if rms else " and bias") + " are applied") if not ok else None
        return None

    return probe


def _eps_family(rms: bool):
    def make(case, eps):
        from ..checker import _reference_module

        ref = _reference_module(_COMPONENT[rms], case)
        x = case.args[0]
        if rms:
            return F.rms_norm(x, ref.weight.shape, ref.weight, eps)
        return F.layer_norm(x, ref.weight.shape, ref.weight, ref.bias, eps)

    values = lambda case: {"0 (none)": 0.0, "2·10⁻⁵": 2e-5, "0.5·10⁻⁵": 5e-6, "10⁻¹⁰": 1e-10, "2ε": 2e-5}
    return family("invariant", make, values, "your ε is {name}, not 10⁻⁵ (inside the root: √(var + ε))")


def _zero(*names):
    def edit(module):
        for name in names:
            module.get_parameter(name).zero_()

    return edit


def _unit_affine(module):
    module.weight.fill_(1.0)
    if getattr(module, "bias", None) is not None:
        module.bias.zero_()


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
        probes=[_statistics_probe(False), _eps_family(False),
                ablate(_unit_affine, "with weight 1 and bias 0 yours is right: the mistake is in how weight and bias "
                                     "are applied (x̂ · weight + bias)")],
        axes={"features": -1},
        reference_module=seeded_module(lambda D: tf.LayerNorm(D)),
    ),
    Component(
        "RMSNorm", "normalization", "class", _norm_cases,
        references={"tinyformer": None, "PyTorch F.rms_norm": _rms_norm_pytorch},
        mistakes=MISTAKES["RMSNorm"],
        probes=[_statistics_probe(True), _eps_family(True),
                ablate(_unit_affine, "with weight 1 yours is right: the mistake is in how weight is applied (x̂ · weight)")],
        axes={"features": -1},
        reference_module=seeded_module(lambda D: tf.RMSNorm(D)),
    ),
    Component(
        "TransformerBlock", "normalization", "class", _block_cases,
        references={"tinyformer": None},
        mistakes=MISTAKES["TransformerBlock"],
        probes=[
            causal(),
            ablate(_zero("ffn.w2.weight"), "with the feed-forward's output switched off (w2 = 0) yours is right: the "
                                           "mistake is in the second half, x + ffn(norm2(x))"),
            ablate(_zero("self_attn.o_proj.weight"), "with attention's output switched off (o_proj = 0) yours is right: "
                                                     "the mistake is in the first half, x + self_attn(norm1(x), mask)"),
            ablate(_zero("self_attn.o_proj.weight", "ffn.w2.weight"),
                   "with attention and feed-forward switched off the block is x itself, and yours is not: each half "
                   "adds to x (the residual)", when_right=False),
        ],
        grow_axes={"position": 1},
        atol=DEEP,
        reference_module=seeded_module(_tinyformer_block),
    ),
]

_COMPONENT = {False: COMPONENTS[0], True: COMPONENTS[1]}
