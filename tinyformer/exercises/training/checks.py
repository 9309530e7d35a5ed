"""The checker's view of chapter "Training": seeded cases and references for cross_entropy,
next_token_loss and adamw_step (run for several steps, feeding back its own state)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

import tinyformer as tf

from ..component import Case, Component, WrongReturn, call, describe, generator, randn
from ..probes import Finding, _span, _with, invariant, name_factor, responds_to, shift_invariant, variant
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


def _one_step(impl, case, grad, exp_avg=None, exp_avg_sq=None, step=1, **changes):
    """One call of adamw_step on the case's parameter: (param, exp_avg, exp_avg_sq), as float64."""
    param = case.args[0]
    exp_avg = torch.zeros_like(param) if exp_avg is None else exp_avg
    exp_avg_sq = torch.zeros_like(param) if exp_avg_sq is None else exp_avg_sq
    out = impl(param.clone(), grad.clone(), exp_avg.clone(), exp_avg_sq.clone(), step, **{**case.kwargs, **changes})
    return [t.double() for t in out]


def _adamw_probe(ctx):
    """Single AdamW steps chosen to ask one question each: the decay alone (grad 0), the first
    moments (from zero state), the first step's size (lr·sign(g)), then the bias correction (step)."""
    from .solution import adamw_step as reference

    for case in ctx.cases:
        kw = case.kwargs
        lr, wd, (b1, b2) = kw["lr"], kw["weight_decay"], kw["betas"]
        param, grad = case.args[0], case.args[1][0]
        zero = torch.zeros_like(param)
        close = lambda a, b: torch.allclose(a, b.double(), rtol=1e-5, atol=1e-9)
        # 1. grad 0 and zero moments: the update is the decay alone, param * (1 - lr * weight_decay).
        mine = _one_step(ctx.impl, case, zero)[0]
        want = _one_step(reference, case, zero)[0]
        if not close(mine, want):
            r = float((mine / param.double()).median()) if torch.isfinite(mine).all() else float("nan")
            names = {1 - wd: "1 − weight_decay (not × lr)", 1.0: "1 (no decay)", 1 - lr: "1 − lr (no weight_decay)",
                     1 / (1 - lr * wd): "1 / (1 − lr·weight_decay)", 1 + lr * wd: "1 + lr·weight_decay (the sign)"}
            said = next((n for v, n in names.items() if abs(v - r) < 1e-5), None)
            return Finding("invariant", f"with grad 0 your step multiplies the parameter by {said or f'{r:.6g}'}; AdamW's "
                                        f"decay is × (1 − lr·weight_decay) = {1 - lr * wd:.6g}")
        # 2. one step from zero moments: m = (1 − β₁)·g and v = (1 − β₂)·g².
        _, m, v = _one_step(ctx.impl, case, grad)
        g = grad.double()
        if not close(m, (1 - b1) * g):
            r = float((m / g).median())
            said = {round(b1, 9): "β₁·g: β₁ and 1 − β₁ swapped?", 1.0: "g: the (1 − β₁) is missing",
                    round(1 - b2, 9): "(1 − β₂)·g: β₂ used for the first moment?"}.get(round(r, 9), f"{r:.4g}·g")
            return Finding("invariant", f"after one step from zero your exp_avg is {said} (it should be (1 − β₁)·g)")
        if not close(v, (1 - b2) * g**2):
            if close(v, (1 - b2) * g.abs()) or close(v, (1 - b2) * g):
                return Finding("invariant", "your exp_avg_sq is not made of squares: it averages grad ** 2")
            r = float((v / g**2).median())
            return Finding("invariant", f"after one step from zero your exp_avg_sq is {r:.4g}·g², not (1 − β₂)·g²")
        # 3. the first step (no decay): m̂ = g and v̂ = g², so each parameter moves by lr·sign(g).
        moved = param.double() - _one_step(ctx.impl, case, grad, weight_decay=0.0)[0]
        want = lr * torch.sign(g)
        if not close(moved, want):
            c = float((moved / want).median())
            names = name_factor(c, {"lr": 1 / lr, "1 − β₁": 1 / (1 - b1), "√(1 − β₂)": 1 / (1 - b2) ** 0.5})
            said = names[0].replace("×", "÷", 1) if names and names[0].startswith("×") else (
                names[0].replace("÷", "×", 1) if names else f"× {c:.4g}")
            return Finding("scale", f"your first step moves each parameter by lr·sign(g) {said}; with m̂ = g and "
                                    f"v̂ = g² it is lr·sign(g) exactly (is the bias correction right?)")
        # 4. from a non-zero state: m <- β₁ m + (1 − β₁) g and v <- β₂ v + (1 − β₂) g².
        state = dict(exp_avg=0.5 * g.flip(-1).to(param.dtype), exp_avg_sq=0.3 * g.to(param.dtype) ** 2 + 0.1)
        _, m, v = _one_step(ctx.impl, case, grad, step=3, **state)
        _, m_ref, v_ref = _one_step(reference, case, grad, step=3, **state)
        if not close(m, m_ref):
            return Finding("invariant", "from a non-zero state your exp_avg is not β₁·exp_avg + (1 − β₁)·g: "
                                        "the old moment decays by β₁, the new gradient enters with 1 − β₁")
        if not close(v, v_ref):
            return Finding("invariant", "from a non-zero state your exp_avg_sq is not β₂·exp_avg_sq + (1 − β₂)·g²")
        # 5. the bias correction: the same state at another step must move as AdamW's does.
        at = {n: _one_step(ctx.impl, case, grad, step=n, weight_decay=0.0, **state)[0] for n in (1, 5)}
        if close(at[5], at[1]):
            return Finding("ignores", "your step does not depend on `step`: the bias correction divides by 1 − β^step")
        if not close(at[5], _one_step(reference, case, grad, step=5, weight_decay=0.0, **state)[0]):
            return Finding("invariant", "at step 5 (same state) your update differs from AdamW's: the bias correction "
                                        "divides m by 1 − β₁^step and v by 1 − β₂^step")
        # 6. eps: with tiny gradients it decides the step's size (outside the square root).
        tiny = grad * 1e-9
        if not close(_one_step(ctx.impl, case, tiny, weight_decay=0.0)[0], _one_step(reference, case, tiny, weight_decay=0.0)[0]):
            return Finding("invariant", "with tiny gradients (1e-9) your step differs from AdamW's: eps is added to "
                                        "√v̂, outside the root, and only there")
    return None


def _row_shift(logits):
    """A different constant for each row of logits (softmax over V cannot see it)."""
    return 50.0 * torch.arange(logits[..., :1].numel(), dtype=logits.dtype).reshape(logits[..., :1].shape)


def _uniform_logits(case):
    logits, targets = case.args
    return _with(case, (torch.zeros_like(logits), targets))


def _ce_sizes(case):
    logits, targets = case.args
    return {"V": logits.shape[-1], "N": targets.numel(), "B": logits.shape[0]}


def _ntl_sizes(case):
    logits, ids = case.args
    B, T, V = logits.shape
    return {"V": V, "B": B, "T": T, "T−1": T - 1, "B·T": B * T, "B·(T−1)": B * (T - 1)}


def _ln_v(case, loss):
    return abs(float(loss) - math.log(case.args[0].shape[-1])) < 1e-4


COMPONENTS = [
    Component(
        "cross_entropy", "training", "function", _ce_cases,
        references={"tinyformer": call(tf.cross_entropy), "PyTorch F.cross_entropy": _pytorch_ce},
        mistakes=MISTAKES["cross_entropy"],
        probes=[invariant("invariant", _ln_v, "the loss of uniform logits (all 0) should be ln V, and yours is not ({case})",
                          inputs=_uniform_logits),
                shift_invariant(_row_shift, "adding a different constant to each row of logits should not change "
                                            "the loss, and yours changes: log-sum-exp over V, minus the target's logit"),
                shift_invariant(100.0, "adding 100 to every logit should not change the loss, and yours changes: "
                                       "log-sum-exp minus the target's logit")],
        sizes=_ce_sizes,
    ),
    Component(
        "next_token_loss", "training", "function", _next_token_cases,
        references={
            "tinyformer": lambda case: tf.cross_entropy(case.args[0][:, :-1], case.args[1][:, 1:]),
            "PyTorch F.cross_entropy": _next_token_pytorch,
        },
        mistakes=MISTAKES["next_token_loss"],
        probes=[
            variant("offbyone", lambda c: tf.cross_entropy(c.args[0][:, 1:], c.args[1][:, :-1]),
                    "position t's logits are scored against token t - 1: logits[:, :-1] predict token_ids[:, 1:]"),
            variant("offbyone", lambda c: tf.cross_entropy(c.args[0], c.args[1]),
                    "position t's logits are scored against token t itself: logits[:, :-1] predict token_ids[:, 1:]"),
            invariant("invariant", _ln_v, "the loss of uniform logits (all 0) should be ln V, and yours is not ({case})",
                      inputs=_uniform_logits),
        ],
        sizes=_ntl_sizes,
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
        probes=[_adamw_probe],
        grow_axes={"step": 0},
    ),
]
