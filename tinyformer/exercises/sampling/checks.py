"""The checker's view of chapter "Sampling": seeded cases and references for
top_k_distribution and top_p_distribution."""

import torch

import tinyformer as tf

from ..component import Case, Component, generator, randn
from ..probes import Finding, _with, normalised, responds_to
from .hints import MISTAKES


def _kept_probe(which):
    """Which tokens the reader keeps (probability > 0) against the reference's, and whether the
    kept ones are in the ratios of softmax(logits / τ)."""

    def probe(ctx):
        for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
            if ctx.close(case, got, want) or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                continue
            logits, knob = case.args
            tau = case.kwargs.get("temperature", 1.0)
            kept, ref_kept = got > 0, want > 0
            n, n_ref = kept.sum(-1), ref_kept.sum(-1)
            if not bool((n == n_ref).all()):
                d = int((n - n_ref).flatten()[(n - n_ref).flatten() != 0][0])
                if bool((n == logits.shape[-1]).all()):
                    return Finding("ignores", f"you keep every token ({case.label}): is `{'k' if which == 'top_k' else 'p'}` used?")
                what = (f"you keep {abs(d)} token{'s' if abs(d) > 1 else ''} {'more' if d > 0 else 'fewer'} in a row "
                        f"than the reference ({case.label}): "
                        + ("keep exactly the k largest logits" if which == "top_k" else
                           "keep the smallest set of most likely tokens whose mass reaches p, the crossing token included"))
                return Finding("offbyone" if abs(d) == 1 else "invariant", what)
            if not bool((kept == ref_kept).all()):
                return Finding("invariant", f"you keep as many tokens as the reference but not the most likely ones ({case.label}): "
                                            "rank by probability, largest first")
            full = torch.softmax(logits.double() / tau, dim=-1)
            ratio = torch.where(kept, got.double() / full, torch.zeros_like(full))
            top = ratio.amax(-1, keepdim=True)
            if not torch.allclose(torch.where(kept, ratio, top), top.expand_as(ratio), rtol=1e-4):
                plain = torch.where(kept, got.double() / torch.softmax(logits.double(), -1), torch.zeros_like(full))
                if tau != 1.0 and torch.allclose(torch.where(kept, plain, plain.amax(-1, keepdim=True)),
                                                 plain.amax(-1, keepdim=True).expand_as(plain), rtol=1e-4):
                    return Finding("ignores", "your kept probabilities are those of softmax(logits), without τ: divide the logits by the temperature")
                return Finding("invariant", f"the tokens you keep are not in the ratios of softmax(logits / τ) ({case.label})")
        return None

    return probe


def _other_temperature(case):
    return _with(case, kwargs={**case.kwargs, "temperature": 0.5})

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
        probes=[normalised(lambda case: -1, "probabilities"), _kept_probe("top_k"), responds_to("temperature", _other_temperature)],
        axes={"features": -1},
        atol=_SAMPLING_ATOL,
    ),
    Component(
        "top_p_distribution", "sampling", "function", _top_p_cases,
        references={"tinyformer": _tinyformer_sampling("top_p")},
        mistakes=MISTAKES["top_p_distribution"],
        probes=[normalised(lambda case: -1, "probabilities"), _kept_probe("top_p"), responds_to("temperature", _other_temperature)],
        axes={"features": -1},
        atol=_SAMPLING_ATOL,
    ),
]
