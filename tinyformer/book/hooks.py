"""One forward-hook recorder: every submodule call of a forward pass, what it received and returned.

The data-flow diagrams (:func:`tinyformer.book.diagrams.trace`) draw what it records, and the
walkthrough (:func:`tinyformer.book.walkthrough.walkthrough`) checks each of its steps against
it, so both show what the model's own forward pass computed::

    with CallRecorder(model) as recorder:
        logits = model(ids)
    recorder.calls["blocks.0.self_attn"][0].out_shape   # (B, T, D)
    recorder.input("blocks.0.norm1")                      # the tensor norm1 received
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Call", "CallRecorder"]


def _tensors(obj) -> list[torch.Tensor]:
    """Every tensor inside ``obj`` (nested tuples, lists and dicts), detached, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj.detach()]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


@dataclass
class Call:
    """One submodule call: its qualified name, the module, its arguments and what it returned.

    ``index`` counts calls in the order they *started*, over all submodules, so a parent comes
    before its children and siblings in the order the code ran them.
    """

    index: int
    name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output: object

    @property
    def inputs(self) -> list[torch.Tensor]:
        """The tensors among the arguments, positional first."""
        return _tensors(self.args) + _tensors(self.kwargs)

    @property
    def outputs(self) -> list[torch.Tensor]:
        """The tensors the call returned (a module may return a tuple, e.g. attention's (out, weights))."""
        return _tensors(self.output)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs[0].shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.outputs[0].shape)


class CallRecorder:
    """Forward hooks on every submodule of ``model`` while the ``with`` block runs.

    ``calls`` maps each qualified name (``"blocks.0.ffn.w1"``) to its calls in the order they
    started; the model itself (name ``""``) is not recorded, its output is the caller's.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.calls: dict[str, list[Call]] = {}
        self._handles: list = []

    def __enter__(self) -> CallRecorder:
        counter = itertools.count()
        started: dict[int, list[int]] = {}  # id(module) -> indices of its calls still running

        for name, module in self.model.named_modules():
            if not name:
                continue

            def pre(mod, args, kwargs):
                started.setdefault(id(mod), []).append(next(counter))

            def post(mod, args, kwargs, output, name=name):
                index = started[id(mod)].pop()
                self.calls.setdefault(name, []).append(Call(index, name, mod, args, kwargs, output))

            self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            self._handles.append(module.register_forward_hook(post, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for calls in self.calls.values():
            calls.sort(key=lambda c: c.index)

    def output(self, name: str, call: int = 0):
        """What submodule ``name`` returned on its ``call``-th call."""
        return self.calls[name][call].output

    def input(self, name: str, call: int = 0) -> torch.Tensor:
        """The first argument submodule ``name`` received on its ``call``-th call."""
        return self.calls[name][call].args[0]
