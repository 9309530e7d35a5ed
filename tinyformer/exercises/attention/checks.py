"""The checker's view of chapter "Self-attention, by hand": seeded cases and references for
softmax and scaled_dot_product_attention."""

import torch
import torch.nn.functional as F

import tinyformer as tf

from ..component import Case, Component, call, generator, randn
from ..probes import Finding, _span, _with, name_factor, normalised, responds_to, shift_invariant
from .hints import MISTAKES


def _dim(case):
    return case.kwargs.get("dim", -1)


def _other_dim(case):
    x = case.args[0]
    dim = _dim(case) % x.dim()
    return _with(case, kwargs={**case.kwargs, "dim": (dim - 1) % x.dim()})


SOFTMAX_PROBES = [
    normalised(_dim, "values"),
    responds_to("dim", _other_dim, "ignores", "your output does not change when `dim` changes: normalise along the `dim` you are given"),
    shift_invariant(3.0, "softmax(x + 3) should equal softmax(x), and yours differs: exp(x) / sum(exp(x)) along dim, "
                         "after subtracting the max"),
]


def attention_weights(ctx, case, run):
    """The attention weights, read out by running with v = the identity (T_k, T_k): then
    weights @ v is the weights themselves. ``run`` is ctx.run or ctx.reference."""
    q, k, v, *rest = case.args
    eye = torch.eye(k.shape[-2], dtype=v.dtype).expand(*k.shape[:-1], k.shape[-2]).clone()
    return run(_with(case, (q, k, eye, *rest)))


def weights_finding(mine, ref, mask, sizes, label):
    """What is wrong with the reader's attention weights ``mine`` (..., T_q, T_k) against the
    reference's: weight on masked keys, rows that do not sum to 1 (or columns that do), or the
    scores' scale. Returns (Finding or None, factor c or None)."""
    if mine.shape != ref.shape:
        return None, None
    if mask is not None:
        hidden = (~mask).expand_as(mine)
        if hidden.any() and float(mine[hidden].nan_to_num(1.0).abs().max()) > 1e-6:
            if float(mine[~hidden].nan_to_num(0.0).abs().max()) < 1e-6:
                return Finding("catalogue", "all your weight is on the keys the mask hides: True means *may attend*"), None
            return Finding("invariant", f"weight {float(mine[hidden].nan_to_num(1.0).abs().max()):.3g} on keys the mask hides "
                                        f"({label}): fill their scores with -inf before the softmax"), None
    rows = mine.sum(-1)
    if not torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        cols = mine.sum(-2)
        if torch.allclose(cols, torch.ones_like(cols), atol=1e-4) or not torch.isfinite(rows).all():
            return Finding("axis", "your weights sum to 1 over the queries (dim=-2), not over the keys: "
                                   "each query's row of scores is one softmax(dim=-1)"), None
        return Finding("invariant", f"each query's weights sum to {_span(rows)}, not 1 ({label}): "
                                    f"one softmax over the keys, after the mask"), None
    if torch.allclose(mine, ref, atol=1e-5):
        return Finding("locate", "your attention weights are right: the mistake is after the softmax (weights @ v)"), None
    c = _log_weight_ratio(mine, ref)
    if c is None:
        return Finding("invariant", f"your weights are not softmax(q·kᵀ / √d_head) up to a scale ({label})"), None
    return None, (c, set(name_factor(c, sizes)))


def scale_finding(factors):
    """One line for the scores' factor, named by a size when every case agrees."""
    if not factors:
        return None
    names = set.intersection(*(n for _, n in factors))
    hint = {"× √d_head": ": did you forget to divide by √d_head?", "÷ √d_head": ": did you divide by d_head instead of √d_head?"}
    if names:
        name = sorted(names, key=len)[0]
        return Finding("scale", f"your scores are the reference's {name}{hint.get(name, '')} (scores = q·kᵀ / √d_head)")
    return Finding("scale", f"your scores are the reference's × {factors[0][0]:.4g}: scores = q·kᵀ / √d_head")


def _attention_weights_probe(ctx):
    """Read the reader's weights (v = identity) and test them: rows sum to 1 over the keys,
    no weight on masked keys, and the scores' scale (the log-weights' spread) against the reference's."""
    factors = []
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        if ctx.close(case, got, want):
            continue
        mine, ref = attention_weights(ctx, case, ctx.run).double(), attention_weights(ctx, case, ctx.reference).double()
        mask = case.args[3] if len(case.args) > 3 else None
        finding, factor = weights_finding(mine, ref, mask, _attention_sizes(case), case.label)
        if finding is not None:
            return finding
        if factor is None:
            return None
        factors.append(factor)
    return scale_finding(factors)


def _log_weight_ratio(mine, ref):
    """c when log(mine) = c * log(ref) up to a constant per row (scores scaled by c), else None."""
    live = (ref > 1e-12) & (mine > 1e-12)
    log_mine, log_ref = mine.clamp_min(1e-300).log(), ref.clamp_min(1e-300).log()
    count = live.sum(-1, keepdim=True).clamp_min(1)
    a = (log_mine - (log_mine * live).sum(-1, keepdim=True) / count) * live
    b = (log_ref - (log_ref * live).sum(-1, keepdim=True) / count) * live
    if float(b.abs().max()) < 1e-6:
        return None
    c = float((a * b).sum() / (b * b).sum())
    return c if torch.allclose(a, c * b, atol=1e-3 * max(1.0, abs(c))) else None


def _attention_sizes(case):
    q, k, v = case.args[:3]
    return {"d_head": q.shape[-1], "T": k.shape[-2], "d_v": v.shape[-1]}


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
        probes=SOFTMAX_PROBES,
        axes={"features": -1},
    ),
    Component(
        "scaled_dot_product_attention", "attention", "function", _attention_cases,
        references={"tinyformer": call(tf.scaled_dot_product_attention), "PyTorch": call(F.scaled_dot_product_attention)},
        mistakes=MISTAKES["scaled_dot_product_attention"],
        probes=[_attention_weights_probe],
        sizes=_attention_sizes,
        axes={"features": -1, "queries": -2},
    ),
]
