"""What the checker knows about a component, and the helpers each chapter's checks.py and
hints.py use to say it: seeded test cases, references (tinyformer's own implementation, and
PyTorch's where PyTorch has one), tolerances, and the classic mistakes it can name.

Shape notation (the book's): B batch, T sequence length, D = d_model, H heads,
d_head = D / H, V vocabulary, τ temperature.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

# Tolerances for deep stacks (many layers; tinyformer keeps its sinusoidal table in float32).
DEEP = {torch.float32: 1e-4, torch.float64: 1e-6}


@dataclass
class Case:
    """One seeded input. For a class component, ``init`` are the constructor's arguments and
    ``args`` the forward's; ``dtype`` is the floating dtype the output must have (None: no rule)."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: tuple = ()
    dtype: torch.dtype | None = None


@dataclass
class Mistake:
    title: str  # what the checker prints: "scores not divided by √d_head"
    hint: str  # what to look at
    impl: Any  # a wrong implementation with the reader's interface (in the chapter's hints.py)


class Mistakes:
    """A chapter's classic mistakes, by component name, in the order they are declared.

    Each wrong implementation in a hints.py is registered by decorating it::

        MISTAKES = Mistakes()

        @MISTAKES.add("softmax", "softmax over the wrong axis", hint="normalise along `dim`")
        def softmax_ignores_dim(x, dim=-1): ...

    The decorator returns the implementation unchanged, so it stays a plain function (or
    class) that the tests and the book can call.
    """

    def __init__(self):
        self.by_component: dict[str, list[Mistake]] = {}

    def add(self, component: str, title: str, *, hint: str):
        def register(impl):
            self.by_component.setdefault(component, []).append(Mistake(title, hint, impl))
            return impl

        return register

    def __getitem__(self, component: str) -> list[Mistake]:
        return self.by_component[component]


@dataclass
class Component:
    name: str
    chapter: str
    kind: str  # "function" or "class"
    cases: Callable[[], list[Case]]
    references: dict[str, Callable[[Case], Any]]  # who -> expected output for a case
    mistakes: list[Mistake] = field(default_factory=list)
    atol: dict = field(default_factory=lambda: {torch.float32: 1e-5, torch.float64: 1e-10})
    out_dtype: torch.dtype | None = None  # a fixed output dtype (bool masks), overriding Case.dtype
    run: Callable | None = None  # custom "call the implementation on a case" (AdamW's several steps)
    reference_module: Callable[[Case], nn.Module] | None = None  # class components: seeded tinyformer module
    param_names: Callable[[Case], dict[str, str]] | None = None  # reader's name -> reference module's name
    # For the diagnosis (probes.py): the chapter's own property probes, the sizes a factor may
    # be named by ({"d_head": 8}), the output's axes by name ({"features": -1, "positions": -2})
    # and the axes along which an error may grow ({"position": -2}).
    probes: list = field(default_factory=list)
    sizes: Callable[[Case], dict[str, float]] | None = None
    axes: dict = field(default_factory=dict)
    grow_axes: dict = field(default_factory=dict)

    @property
    def qualname(self) -> str:
        return f"{self.chapter}.{self.name}"


class WrongReturn(Exception):
    """The implementation returned something of the wrong kind (raised by a custom runner)."""


def describe(value) -> str:
    """A value in a few words, for the report: "a tensor of shape (2, 3) and dtype torch.float32"."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}" if value is not None else "None"


# ------------------------------------------------------- helpers for checks.py


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g, *shape, dtype=torch.float32, scale=1.0):
    """Normal samples drawn in float64 then cast, so a case's values do not depend on ``dtype``."""
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def call(fn):
    """A reference that is a plain function with the reader's signature."""
    return lambda case: fn(*case.args, **case.kwargs)


def seeded_module(make):
    """Build a tinyformer module under a fixed seed, and move every parameter off its
    initial value (norm weights start at exactly 1): a check should not pass by luck."""

    def build(case):
        torch.manual_seed(zlib.crc32(case.label.encode()))  # the same weights in every process
        module = make(*case.init)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return module

    return build
