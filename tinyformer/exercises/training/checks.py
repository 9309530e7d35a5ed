"""The checker's view of chapter "Training": seeded cases and references for cross_entropy,
next_token_loss and adamw_step (run for several steps, feeding back its own state)."""

import torch
import torch.nn.functional as F
from torch import nn

import tinyformer as tf

from ..component import Case, Component, WrongReturn, call, describe, generator, randn
from .hints import MISTAKES


def _ce_cases():
    g = generator(11)
    return [
        Case("logits (B=4, V=10), targets (B,)", (randn(g, 4, 10), torch.randint(0, 10, (4,), generator=g)), dtype=torch.float32),
        Case(
            "logits (B=2, T=3, V=7) float64, targets (B, T)",
            (randn(g, 2, 3, 7, dtype=torch.float64), torch.randint(0, 7, (2, 3), generator=g)),
            dtype=torch.float64,
        ),
        Case("large logits (3, 5) ~ ±1e4", (randn(g, 3, 5, scale=1e4), torch.tensor([0, 2, 4])), dtype=torch.float32),
    ]


def _pytorch_ce(case):
    logits, targets = case.args
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


def _next_token_cases():
    g = generator(12)
    return [
        Case("logits (B=2, T=6, V=10), ids (B, T)", (randn(g, 2, 6, 10), torch.randint(0, 10, (2, 6), generator=g)), dtype=torch.float32),
        Case(
            "logits (B=3, T=4, V=5) float64, ids (B, T)",
            (randn(g, 3, 4, 5, dtype=torch.float64), torch.randint(0, 5, (3, 4), generator=g)),
            dtype=torch.float64,
        ),
    ]


def _next_token_pytorch(case):
    logits, token_ids = case.args
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), token_ids[:, 1:].flatten())


def _adamw_cases():
    g = generator(13)
    return [
        Case(
            "param (5,), 4 steps, lr=0.01, weight_decay=0.1",
            (randn(g, 5), [randn(g, 5) for _ in range(4)]),
            {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1},
            dtype=torch.float32,
        ),
        Case(
            "param (3, 4) float64, 6 steps, lr=0.05, betas=(0.8, 0.99), weight_decay=0.5",
            (randn(g, 3, 4, dtype=torch.float64), [randn(g, 3, 4, dtype=torch.float64) for _ in range(6)]),
            {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-8, "weight_decay": 0.5},
            dtype=torch.float64,
        ),
    ]


def _run_adamw(impl, case):
    """Call the reader's adamw_step once per gradient, feeding back its own state;
    the output is the parameter after every step, stacked: (steps, *param.shape)."""
    param, grads = case.args
    exp_avg, exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
    trajectory = []
    for step, grad in enumerate(grads, start=1):
        returned = impl(param, grad, exp_avg, exp_avg_sq, step, **case.kwargs)
        if not (isinstance(returned, tuple) and len(returned) == 3 and all(isinstance(t, torch.Tensor) for t in returned)):
            raise WrongReturn(
                f"adamw_step returned {describe(returned)}; expected a tuple of 3 tensors (param, exp_avg, exp_avg_sq)"
            )
        param, exp_avg, exp_avg_sq = returned
        trajectory.append(param)
    return torch.stack(trajectory)


def _optimizer_reference(make_optimizer):
    def reference(case):
        param, grads = case.args
        p = nn.Parameter(param.clone())
        opt = make_optimizer([p], **case.kwargs)
        trajectory = []
        for grad in grads:
            p.grad = grad.clone()
            opt.step()
            trajectory.append(p.detach().clone())
        return torch.stack(trajectory)

    return reference


COMPONENTS = [
    Component(
        "cross_entropy", "training", "function", _ce_cases,
        references={"tinyformer": call(tf.cross_entropy), "PyTorch F.cross_entropy": _pytorch_ce},
        mistakes=MISTAKES["cross_entropy"],
    ),
    Component(
        "next_token_loss", "training", "function", _next_token_cases,
        references={
            "tinyformer": lambda case: tf.cross_entropy(case.args[0][:, :-1], case.args[1][:, 1:]),
            "PyTorch F.cross_entropy": _next_token_pytorch,
        },
        mistakes=MISTAKES["next_token_loss"],
    ),
    Component(
        "adamw_step", "training", "function", _adamw_cases,
        references={
            "tinyformer AdamW": _optimizer_reference(tf.AdamW),
            "PyTorch torch.optim.AdamW": _optimizer_reference(torch.optim.AdamW),
        },
        mistakes=MISTAKES["adamw_step"],
        atol={torch.float32: 1e-6, torch.float64: 1e-10},
        run=_run_adamw,
    ),
]
