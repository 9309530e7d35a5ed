"""The checker's view of chapter "Embeddings and positions": seeded cases and references for
sinusoidal_positions and rope."""

import math

import torch

import tinyformer as tf

from ..component import Case, Component, generator, randn
from ..probes import Finding, _with, name_factor, responds_to
from .hints import MISTAKES


def _pair_angles(out, x=None):
    """The angle of each adjacent pair (out[2i], out[2i+1]) as a point (cos-like, sin-like), or,
    given x, the angle that rotates x's pair onto out's: atan2(x × out, x · out)."""
    e, o = out[..., 0::2].double(), out[..., 1::2].double()
    if x is None:
        return torch.atan2(e, o)  # sinusoidal: (sin a, cos a) -> a
    xe, xo = x[..., 0::2].double(), x[..., 1::2].double()
    return torch.atan2(xe * o - xo * e, xe * e + xo * o)


def _wrap(a):
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def _angle_finding(mine, positions, freq, sizes, what):
    """Name how the reader's (wrapped) angles ``mine`` (T, pairs) differ from p · freq: p ± 1,
    the sign, or a factor named by a size."""
    p = positions.double()[:, None]
    near = lambda angles: torch.allclose(_wrap(mine - angles), torch.zeros_like(mine), atol=1e-3)
    for shift in (1, -1):
        if near((p + shift) * freq):
            return Finding("offbyone", f"your angles are those of position p {shift:+d}: positions count from 0 (p · freq)")
    true = p * freq
    usable = (true.abs() > 0.05) & (true.abs() < 1.5)
    if not usable.any():
        return None
    c = float((mine[usable] / true[usable]).median())
    if not near(c * true):
        return None
    if abs(c + 1) < 1e-3:
        return Finding("scale", f"your {what} turns the other way (angle × −1): a sign of sin is flipped")
    names = name_factor(c, sizes)
    return Finding("scale", f"your {what} angles are the reference's {names[0] if names else f'× {c:.4g}'}: "
                            f"angle = p · base^(−2i/d)")


def _sinusoidal_probe(ctx):
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        if ctx.close(case, got, want) or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            continue
        got = got.double()
        T, D = case.args
        row0 = got[0]
        if torch.allclose(row0[0::2], torch.ones_like(row0[0::2])) and torch.allclose(row0[1::2], torch.zeros_like(row0[1::2])):
            return Finding("axis", "your row 0 is [1, 0, 1, 0, …]: cosines in the even columns and sines in the odd; "
                                   "PE[p, 2i] = sin, PE[p, 2i+1] = cos")
        if not (torch.allclose(row0[0::2], torch.zeros_like(row0[0::2]), atol=1e-5)
                and torch.allclose(row0[1::2], torch.ones_like(row0[1::2]), atol=1e-5)):
            return Finding("invariant", "row 0 (position 0) should be [0, 1, 0, 1, …] = (sin 0, cos 0): "
                                        "positions count from 0, and every column takes p · freq")
        norms = got[:, 0::2] ** 2 + got[:, 1::2] ** 2
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            return Finding("invariant", "PE[p, 2i]² + PE[p, 2i+1]² should be 1 (sin and cos of one angle), and "
                                        "yours is not: the same angle goes in both columns of a pair")
        freq = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
        finding = _angle_finding(_pair_angles(got)[1:2], torch.tensor([1]), freq, {"D": D, "10000": 10000.0}, "position 1's")
        if finding is not None:
            return finding
    return None


def _rope_probe(ctx):
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        if ctx.close(case, got, want) or not isinstance(got, torch.Tensor) or got.shape != want.shape:
            continue
        x, positions = case.args
        d = x.shape[-1]
        pair = lambda t: t[..., 0::2].double() ** 2 + t[..., 1::2].double() ** 2
        if not torch.allclose(pair(got), pair(x), rtol=1e-4, atol=1e-5):
            halves = lambda t: t[..., : d // 2].double() ** 2 + t[..., d // 2:].double() ** 2
            if torch.allclose(halves(got), halves(x), rtol=1e-4, atol=1e-5):
                return Finding("axis", "you rotate the pairs (x[i], x[i + d/2]) (halves); the book rotates adjacent "
                                       "pairs (x[2i], x[2i+1])")
            return Finding("invariant", "a rotation keeps the length of each pair (x[2i], x[2i+1]), and yours changes it: "
                                        "(a cos − b sin, a sin + b cos)")
        if int(positions[0]) == 0 and not torch.allclose(got[..., 0, :].double(), x[..., 0, :].double(), atol=1e-5):
            return Finding("invariant", "at position 0 the angle is 0, so RoPE must return x unchanged there, and yours does not")
        theta = case.kwargs.get("theta", 10000.0)
        freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles = _pair_angles(got, x)
        return _angle_finding(angles.reshape(-1, *angles.shape[-2:])[0], positions, freq, {"d_head": d, "θ": theta}, "rotation")
    return None


def _rope_other_theta(case):
    return _with(case, kwargs={**case.kwargs, "theta": 77.0})


def _rope_later_positions(case):
    return _with(case, (case.args[0], case.args[1] + 3))

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
        probes=[_sinusoidal_probe],
        sizes=lambda case: {"D": case.args[1], "T": case.args[0]},
        axes={"features": -1, "positions": 0},
        atol={torch.float32: 1e-6},
    ),
    Component(
        "rope", "positions", "function", _rope_cases,
        references={"tinyformer": _tinyformer_rope},
        mistakes=MISTAKES["rope"],
        probes=[_rope_probe, responds_to("theta", _rope_other_theta), responds_to("token_positions", _rope_later_positions)],
        sizes=lambda case: {"d_head": case.args[0].shape[-1]},
        axes={"features": -1, "positions": -2},
        atol=_FLOAT32_TABLES,
    ),
]
