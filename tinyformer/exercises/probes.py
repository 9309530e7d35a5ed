"""Say what *kind* of mistake a wrong implementation made, from properties, not from a list.

The checker knows a component's wrong outputs and the reference's. The probes here compare the
two, or run the reader's code again on inputs chosen to ask one question each:

- generic probes, for every component with tensor outputs: a constant factor or a power of a size
  (D, d_head, T, V, B) between the outputs; values that are nan or inf where the reference is
  finite; right on a subset (even or odd columns, the first half of the features, the first
  position, the first batch element, some cases but not others) and wrong elsewhere; errors that
  grow along a position or step axis;
- a chapter's own properties, declared in its checks.py with the helpers below: invariants
  (rows that sum to 1, no weight on masked keys, no dependence on future tokens, norms a rotation
  keeps, ln V for uniform logits), arguments the output must respond to (``responds_to``:
  temperature, dim, mask, positions, step, lr) and named variants of the reference
  (``variant``: "the mask applied after the softmax" computed, not listed).

Each finding is one line in the book's notation with a *kind* ("scale", "ignores", "invariant",
"axis", "causal", "subset", "grows", "overflow", "offbyone", "locate", "catalogue"; "cases" only
lists the cases that fail, which is not a diagnosis); the mutation suite
(:mod:`tinyformer.exercises.mutations`) checks the kind against the mutation it made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .component import Case

MAX_FINDINGS = 2  # lines per failing component, so a report stays short (header + 3 + these)


@dataclass(frozen=True)
class Finding:
    kind: str
    line: str


@dataclass
class Context:
    """What a probe may look at: the component, the reader's implementation, the cases, the
    reader's outputs and the reference's (first reference), and ways to run either again."""

    component: Any
    impl: Any
    cases: list[Case]
    outputs: list
    expected: list

    def run(self, case: Case):
        from .checker import _run

        return _run(self.component, self.impl, case)

    def reference(self, case: Case):
        from .checker import _expected

        return next(iter(_expected(self.component, case).values()))

    def sizes(self, case: Case) -> dict[str, float]:
        return self.component.sizes(case) if self.component.sizes else {}

    def close(self, case: Case, a, b) -> bool:
        from .checker import _agree

        return _agree(self.component, case, a, b)


Probe = Callable[[Context], "Finding | None"]


def _pairs(ctx: Context):
    """(case, got, want) for the cases whose outputs are comparable float tensors."""
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        if (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape
                and got.is_floating_point() and want.is_floating_point()):
            yield case, got.double(), want.double()


def _span(values: torch.Tensor) -> str:
    """"0.5" when all values are (about) one number, else "0.13..0.21"."""
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.4g}" if abs(hi - lo) <= 1e-4 * max(1.0, abs(lo)) else f"{lo:.3g}..{hi:.3g}"


def _tol(ctx: Context, case: Case) -> float:
    return 10 * ctx.component.atol.get(case.dtype or torch.float32, 1e-5)


# ---------------------------------------------------------------- naming a number

_ROOTS = {0.5: "√{}", 1: "{}", 2: "{}²", 0.25: "{}^¼", 1.5: "{}^1.5"}


def name_factor(c: float, sizes: dict[str, float]) -> list[str]:
    """The ways to write c as ±size^p or a small constant: ["× √d_head", ...] (several when sizes tie)."""
    if not math.isfinite(c) or c == 0:
        return []
    sign, a = ("−" if c < 0 else ""), abs(c)
    names = []
    if abs(a - 1) < 1e-3:
        return ["× −1"] if c < 0 else []
    for size, value in sizes.items():
        if value <= 1:
            continue
        for p, fmt in _ROOTS.items():
            for op, q in (("×", p), ("÷", -p)):
                if abs(math.log(a) - q * math.log(value)) < 2e-3:
                    names.append(f"{op} {sign}{fmt.format(size)}")
    pairs = [(a, b) for a in sizes for b in sizes if a != b and sizes[a] > 1 and sizes[b] > 1 and sizes[a] != sizes[b]]
    group = lambda name: f"({name})" if any(op in name for op in "−+·") else name
    for top, bottom in pairs:
        for p, fmt in ((0.5, "√({}/{})"), (1, "{}/{}")):
            if abs(math.log(a) - p * math.log(sizes[top] / sizes[bottom])) < 2e-3:
                names.append(f"× {sign}{fmt.format(group(top), group(bottom))}")
    for k, label in ((2, "2"), (0.5, "½"), (10, "10"), (0.1, "0.1"), (math.e, "e")):
        if abs(math.log(a) - math.log(k)) < 2e-3:
            names.append(f"× {sign}{label}")
    return names


def constant_ratio(got: torch.Tensor, want: torch.Tensor, tol: float) -> float | None:
    """c when got = c * want everywhere (within tol), else None."""
    big = want.abs() > max(1e-6, 1e-3 * float(want.abs().max()))
    if not big.any():
        return None
    c = float((got[big] / want[big]).median())
    if not math.isfinite(c) or abs(c - 1) < 1e-9:
        return None
    if torch.allclose(got, c * want, rtol=tol * 10, atol=tol * 10):
        return c
    return None


# ------------------------------------------------------------------- generic probes


def _probe_overflow(ctx: Context) -> Finding | None:
    for case, got, want in _pairs(ctx):
        bad = ~torch.isfinite(got) & torch.isfinite(want)
        if bad.any():
            return Finding("overflow", f"{int(bad.sum())} values are nan or inf where the reference is finite "
                                       f"({case.label}): an exp() that overflows, a division by 0, or entries never written (torch.empty)?")
    return None


def _probe_scale(ctx: Context) -> Finding | None:
    """A constant factor between the reader's output and the reference's, named as a size."""
    common, factors = None, []
    for case, got, want in _pairs(ctx):
        if ctx.close(case, got, want):
            continue
        c = constant_ratio(got, want, _tol(ctx, case)) if torch.isfinite(got).all() else None
        if c is None:
            return None
        factors.append(c)
        names = set(name_factor(c, ctx.sizes(case)))
        common = names if common is None else common & names
    if not factors:
        return None
    if common:
        name = sorted(common, key=len)[0]
        return Finding("scale", f"your output is the reference's {name} on every case: a factor of "
                                f"{name.split(' ', 1)[1]} too many or too few somewhere")
    if len({round(f, 6) for f in factors}) == 1 and min(g.numel() for _, g, _ in _pairs(ctx)) > 1:
        return Finding("scale", f"your output is the reference's × {factors[0]:.4g} on every value: a constant factor")
    return None


def _probe_offset(ctx: Context) -> Finding | None:
    deltas = []
    for case, got, want in _pairs(ctx):
        if ctx.close(case, got, want):
            continue
        d = got - want
        if d.numel() < 2 or not torch.isfinite(d).all():  # any two numbers differ by a constant: that says nothing
            return None
        if float((d - d.flatten()[0]).abs().max()) > _tol(ctx, case):
            return None
        deltas.append(float(d.flatten()[0]))
    if deltas:
        return Finding("scale", f"your output is the reference's {deltas[0]:+.4g} on every value: a constant term added or dropped")
    return None


def _close_mask(ctx: Context, case: Case, got, want) -> torch.Tensor:
    tol = _tol(ctx, case)
    return torch.isclose(got, want, rtol=tol, atol=tol) | (got.isnan() & want.isnan())


def _probe_subset(ctx: Context) -> Finding | None:
    """Right on part of the output (columns, positions, batch elements) and wrong on the rest."""
    axes = ctx.component.axes
    for case, got, want in _pairs(ctx):
        ok = _close_mask(ctx, case, got, want)
        if ok.all() or not ok.any() or got.dim() == 0:
            continue
        for name, axis in axes.items():
            if got.dim() < (abs(axis) if axis < 0 else axis + 1):
                continue
            n = got.shape[axis]
            if n < 2:
                continue
            per = ok.movedim(axis, 0).reshape(n, -1).all(dim=1)
            if per.all() or not per.any():
                continue
            idx = torch.arange(n)
            singular = name.rstrip("s")
            if name == "features" and bool(per[idx % 2 == 0].all()) and not per[idx % 2 == 1].any():
                return Finding("subset", f"the even {name} (0, 2, 4, …) are right and the odd ones wrong ({case.label})")
            if name == "features" and bool(per[idx % 2 == 1].all()) and not per[idx % 2 == 0].any():
                return Finding("subset", f"the odd {name} are right and the even ones (0, 2, …) wrong ({case.label})")
            first = int(per.logical_not().nonzero()[0])
            if bool(per[:first].all()) and not per[first:].any():
                what = f"{singular} 0" if first == 1 else f"the first {first} {name}"
                return Finding("subset", f"{what} right, every {singular} from {first} on wrong ({case.label})")
            if not per[: n // 2].any() and bool(per[n // 2:].all()):
                return Finding("subset", f"the second half of the {name} is right and the first half wrong ({case.label})")
            wrong = (~per).nonzero().flatten().tolist()
            if len(wrong) <= 2:
                return Finding("subset", f"only {singular} {', '.join(map(str, wrong))} of 0..{n - 1} is wrong ({case.label})")
    return None


def _probe_grows(ctx: Context) -> Finding | None:
    """The error grows steadily along a position or step axis."""
    for name, axis in ctx.component.grow_axes.items():
        for case, got, want in _pairs(ctx):
            if got.dim() == 0 or got.shape[axis] < 3:
                continue
            err = (got - want).abs().movedim(axis, 0).reshape(got.shape[axis], -1).amax(dim=1)
            tol = _tol(ctx, case)
            if float(err[0]) <= tol and float(err[-1]) > tol and bool((err[1:] >= err[:-1] - tol).all()) and float(err[-1]) > 4 * float(err[1]):
                return Finding("grows", f"the error is 0 at {name} 0 and grows with the {name} "
                                        f"({float(err[1]):.2g} at 1, {float(err[-1]):.2g} at {got.shape[axis] - 1}; {case.label})")
    return None


def _max_error(got, want) -> float:
    try:
        return float((got.double() - want.double()).abs().max())
    except Exception:
        return float("inf")


def _probe_cases(ctx: Context) -> Finding | None:
    """Right on some cases, wrong on others: say what the wrong ones have in common."""
    right = [ctx.close(c, g, w) for c, g, w in zip(ctx.cases, ctx.outputs, ctx.expected)]
    if all(right) or not any(right):
        return None
    wrong_cases = [c for c, r in zip(ctx.cases, right) if not r]
    right_cases = [c for c, r in zip(ctx.cases, right) if r]
    for key in sorted({k for c in wrong_cases for k in c.kwargs}):
        if all(key in c.kwargs for c in wrong_cases) and not any(key in c.kwargs for c in right_cases):
            return Finding("ignores", f"right with the default {key}, wrong when {key} is given: is `{key}` used?")
    dtypes = {c.dtype for c in wrong_cases}
    worst = max(_max_error(g, w) for c, g, w in zip(ctx.cases, ctx.outputs, ctx.expected) if c in wrong_cases)
    if len(dtypes) == 1 and dtypes.isdisjoint({c.dtype for c in right_cases}) and torch.float64 in dtypes and worst > 1e-4:
        return Finding("dtype", "right in float32, wrong in float64: a constant or table made in float32?")
    labels = "; ".join(c.label for c in wrong_cases)
    return Finding("cases", f"right on {len(right_cases)} of {len(ctx.cases)} cases, wrong on: {labels}")


GENERIC: list[Probe] = [_probe_overflow, _probe_scale, _probe_offset, _probe_grows, _probe_subset, _probe_cases]


# ------------------------------------------------- helpers for a chapter's checks.py


def _with(case: Case, args=None, kwargs=None) -> Case:
    return Case(case.label, tuple(case.args if args is None else args), dict(case.kwargs if kwargs is None else kwargs),
                case.init, case.dtype)


def variant(kind: str, make: Callable[[Case], Any], message: str) -> Probe:
    """The reader's outputs equal ``make(case)`` (a described wrong version of the reference,
    computed from the case) on every case: say ``message``."""

    def probe(ctx: Context) -> Finding | None:
        for case, got in zip(ctx.cases, ctx.outputs):
            try:
                wrong = make(case)
            except Exception:
                return None
            if wrong is None or not ctx.close(case, wrong, got):
                return None
        return Finding(kind, message)

    return probe


def family(kind: str, make: Callable[[Case, float], Any], values: Callable[[Case], dict[str, float]], message: str) -> Probe:
    """Like :func:`variant` over a family: ``make(case, value)`` for each named value of
    ``values(case)`` ({"d_head": 8.0, ...}); the first name that matches every case fills
    ``message.format(name=...)``."""

    def probe(ctx: Context) -> Finding | None:
        names = None
        for case, got in zip(ctx.cases, ctx.outputs):
            here = set()
            for name, value in values(case).items():
                try:
                    if ctx.close(case, make(case, value), got):
                        here.add(name)
                except Exception:
                    pass
            names = here if names is None else names & here
            if not names:
                return None
        return Finding(kind, message.format(name=sorted(names, key=len)[0]))

    return probe


def invariant(kind: str, holds: Callable[[Case, Any], bool], message: str, inputs: Callable[[Case], Case] | None = None) -> Probe:
    """``holds(case, output)`` is true of the reference; say ``message`` when the reader's output
    breaks it on a case (run on ``inputs(case)`` when given, e.g. uniform logits)."""

    def probe(ctx: Context) -> Finding | None:
        for case, got in zip(ctx.cases, ctx.outputs):
            try:
                if inputs is not None:
                    case = inputs(case)
                    if case is None:
                        continue
                    got = ctx.run(case)
                if not holds(case, got):
                    return Finding(kind, message.format(case=case.label))
            except Exception:
                continue
        return None

    return probe


def responds_to(argument: str, change: Callable[[Case], Case | None], kind: str = "ignores", message: str | None = None) -> Probe:
    """Vary one argument (``change(case)``: the same case with ``argument`` changed): when the
    reference's output changes and the reader's does not, the reader ignores it."""

    def probe(ctx: Context) -> Finding | None:
        for case, got in zip(ctx.cases, ctx.outputs):
            try:
                other = change(case)
                if other is None:
                    continue
                ref_moved = not ctx.close(case, ctx.reference(other), ctx.reference(case))
                if ref_moved and ctx.close(case, ctx.run(other), got):
                    return Finding(kind, message or f"your output does not change when `{argument}` changes: is it used?")
            except Exception:
                continue
        return None

    return probe


# ---------------------------------------------------------------------- the engine


def findings(component, impl, cases, outputs, expected, catalogue: list[tuple[str, str]] = ()) -> list[Finding]:
    """Every finding, most specific first: the catalogue's named mistakes, the component's
    declared properties, then (only when those found nothing) the generic probes. Probes that
    fail themselves are skipped."""
    ctx = Context(component, impl, cases, outputs, expected)
    found: list[Finding] = [Finding("catalogue", f"looks like: {title}. Hint: {hint}") for title, hint in catalogue]
    for probe in [*component.probes, *GENERIC]:
        if len(found) >= MAX_FINDINGS or (found and probe is GENERIC[0]):
            break  # the generic probes speak only when nothing more specific has
        try:
            finding = probe(ctx)
        except Exception:
            finding = None
        if finding is not None and finding.line not in {f.line for f in found}:
            found.append(finding)
    return found[:MAX_FINDINGS]


def normalised(dim_of: Callable[[Case], int], what: str = "values") -> Probe:
    """The output sums to 1 along ``dim_of(case)`` (softmax, sampling distributions): when it does
    not, say along which dim it does (the wrong axis), or what it sums to."""

    def probe(ctx: Context) -> Finding | None:
        for case, got in zip(ctx.cases, ctx.outputs):
            if not isinstance(got, torch.Tensor) or not got.is_floating_point() or got.dim() == 0:
                continue
            dim = dim_of(case) % got.dim()
            sums = got.double().sum(dim=dim)
            if not torch.isfinite(sums).all():
                continue  # nan or inf: the generic probe says so
            if torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                continue
            others = [d for d in range(got.dim()) if d != dim and got.shape[d] > 1
                      and torch.allclose(got.double().sum(dim=d), torch.ones(()).double(), atol=1e-4)]
            if others:
                return Finding("axis", f"your {what} sum to 1 along dim {others[0]}, not along dim {dim} ({case.label}): "
                                       f"normalise along the dim you are given")
            shown = _span(sums)
            return Finding("invariant", f"your {what} along dim {dim} sum to {shown}, not 1 ({case.label}): "
                                        f"divide by their sum, over that same dim")
        return None

    return probe


def shift_invariant(shift, message: str, arg: int = 0) -> Probe:
    """f(x + shift) = f(x) for the reference (softmax, losses, LayerNorm): say ``message`` when
    the reader's output moves."""

    def probe(ctx: Context) -> Finding | None:
        for case, got in zip(ctx.cases, ctx.outputs):
            args = list(case.args)
            if not isinstance(args[arg], torch.Tensor) or not args[arg].is_floating_point():
                continue
            args[arg] = args[arg] + (shift(args[arg]) if callable(shift) else shift)
            other = _with(case, args)
            try:
                if ctx.close(case, ctx.reference(other), ctx.reference(case)) and not ctx.close(case, ctx.run(other), got):
                    return Finding("invariant", message)
            except Exception:
                continue
        return None

    return probe


# ------------------------------------------------------------ class components


def _edited_run(ctx: Context, case: Case, edit: Callable, label: str):
    """(reader's output, reference's output) on ``case`` with the reference module's weights
    changed by ``edit(module)`` first (the reader's module gets the same weights)."""
    import copy

    from . import checker

    key = (ctx.component.name, case.label)
    original = checker._reference_module(ctx.component, case)
    edited = copy.deepcopy(original)
    with torch.no_grad():
        edit(edited)
    checker._REFERENCE_MODULES[key] = edited
    try:
        mine = ctx.run(case)
        ref = ctx.reference(case)
    finally:
        checker._REFERENCE_MODULES[key] = original
    return mine, ref


def ablate(edit: Callable, message: str, label: str = "ablated", when_right: bool = True) -> Probe:
    """Switch part of the module off in both (``edit(module)``, e.g. zero ffn.w2): when the reader's
    output then matches, the mistake is in that part: say ``message``. With ``when_right=False``,
    say it when the reader's output still differs (the mistake is in what is left)."""

    def probe(ctx: Context) -> Finding | None:
        for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
            if ctx.close(case, got, want):
                continue
            mine, ref = _edited_run(ctx, case, edit, label)
            return Finding("locate", message) if ctx.close(case, mine, ref) == when_right else None
        return None

    return probe


def causal(position_axis: int = 1, message: str | None = None) -> Probe:
    """Changing the last input position must not change any earlier output position."""

    def probe(ctx: Context) -> Finding | None:
        for case in ctx.cases:
            x = case.args[0]
            if x.shape[position_axis] < 2:
                continue
            changed = x.clone()
            last = changed.select(position_axis, -1)
            last.copy_(last + 1 if x.is_floating_point() else (last + 1) % max(2, int(x.max()) + 1))
            other = _with(case, (changed, *case.args[1:]))
            n = x.shape[position_axis] - 1
            early = lambda t: t.narrow(position_axis, 0, n).double()
            if not torch.allclose(early(ctx.reference(case)), early(ctx.reference(other)), atol=1e-6, equal_nan=True):
                continue  # the reference itself sees later positions here (no mask)
            if not torch.allclose(early(ctx.run(case)), early(ctx.run(other)), atol=1e-6, equal_nan=True):
                return Finding("causal", message or f"changing the last token changes your outputs at earlier positions "
                                                    f"({case.label}): a position may not see later ones (causal mask)")
        return None

    return probe
