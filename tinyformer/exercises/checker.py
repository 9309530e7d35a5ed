"""The autograder: run a reader's implementation on seeded inputs, compare it with the
references, and, when it is wrong, say how, and name the mistake if it is a known one.

Each component is checked in a forked child process with a time limit, so code that
loops forever, crashes or prints a lot costs one line of the report, not the run. The child
is not a sandbox: the reader's files run with the reader's own rights, like any script they
run (they can read, write and delete what the reader can).

An implementation that is, or calls, the very function it is checked against (``softmax =
torch.softmax``) passes, with a note saying so (:data:`REFERENCE_CALLABLES`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import io
import math
import multiprocessing
import os
import signal
import sys
import threading
import traceback
import types
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .component import Case, Component, WrongReturn, describe
from .probes import findings
from .registry import BY_NAME, CHAPTERS, COMPONENTS

DEFAULT_TIMEOUT = 30.0  # seconds per component; the reference solutions need well under one
MAX_TIMEOUT = 86400.0  # a day: longer is a typo, and poll()/setitimer() overflow on huge values
OUTPUT_LIMIT = 20_000  # characters of the reader's printed output kept (the rest is counted, not kept)
SHOWN_LINES, SHOWN_LINE_CHARS = 10, 200  # of those, what the report echoes
_READER_PACKAGE = "_tinyformer_reader"  # the reader's folder is imported as this package
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tinyformer/
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


@dataclass
class Result:
    """The verdict on one component."""

    component: str  # "chapter.name"
    status: str  # "pass", "fail", "todo" (not yet implemented), "error", "timeout", "missing"
    summary: str  # one line
    details: list[str] = field(default_factory=list)
    mistakes: list[str] = field(default_factory=list)  # names of the known mistakes it matches
    output: str = ""  # what the reader's code printed: its first OUTPUT_LIMIT characters
    output_chars: int = 0  # how many characters it printed in all (0: len(output))
    output_lines: int = 0  # how many lines, when output is cut short (0: count them in output)
    reference_call: str = ""  # the reference it is or calls ("torch.softmax"), if any
    kinds: list[str] = field(default_factory=list)  # the kind of each diagnosis line (probes.Finding.kind)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def lines(self) -> list[str]:
        mark = "✓" if self.passed else "✗"
        out = [f"{mark} {self.component:<42} {self.summary}"]
        out += [f"    {line}" for line in self.details]
        out += self._printed()
        return out

    def _printed(self) -> list[str]:
        """What the reader's code printed, at most SHOWN_LINES lines of SHOWN_LINE_CHARS
        characters: one 50 MB line costs a line of the report, not 50 MB."""
        printed = self.output.strip().splitlines()
        if not printed:
            return []
        cut_short = self.output_chars > len(self.output)
        n_lines = self.output_lines if cut_short and self.output_lines else len(printed)
        notes = [f"{n_lines:,} lines" if n_lines != 1 else "1 line"]
        if cut_short:
            notes.append(f"{self.output_chars:,} characters")
        shown = printed[:SHOWN_LINES]
        if n_lines > len(shown):
            notes.append(f"the first {len(shown)} shown")
        if any(len(line) > SHOWN_LINE_CHARS for line in shown):
            notes.append(f"lines cut at {SHOWN_LINE_CHARS} characters")
        out = [f"    your code printed ({', '.join(notes)}):"]
        out += [f"      {line[:SHOWN_LINE_CHARS]}" + (" …" if len(line) > SHOWN_LINE_CHARS else "") for line in shown]
        return out


@dataclass
class Report:
    """Every component's Result; ``passed`` when all of them passed."""

    results: list[Result]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> Result:
        for r in self.results:
            if name in (r.component, r.component.split(".")[-1]):
                return r
        raise KeyError(name)

    def __repr__(self) -> str:
        n_pass = sum(r.passed for r in self.results)
        return f"<Report: {n_pass} of {len(self.results)} components pass>"


class _Problem(Exception):
    """Something the reader must fix before the values can be compared (status, message)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _Timeout(BaseException):
    """Raised by the alarm when a check runs in-process; BaseException so `except Exception`
    in the reader's code cannot swallow it."""


# ------------------------------------------------------------- running one case


def _clone(value):
    """A fresh copy of a case's inputs: the reader's code may modify them in place."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return copy.copy(value)


_REFERENCE_MODULES: dict[tuple[str, str], nn.Module] = {}


def _reference_module(component: Component, case: Case) -> nn.Module:
    """The seeded tinyformer module for a case, built once per process (it is only read)."""
    key = (component.name, case.label)
    if key not in _REFERENCE_MODULES:
        _REFERENCE_MODULES[key] = component.reference_module(case).to(case.dtype)
    return _REFERENCE_MODULES[key]


def _build_reader_module(component: Component, cls, case: Case) -> nn.Module:
    """Instantiate the reader's class and give it the reference module's weights, by name."""
    module = cls(*case.init)
    if not isinstance(module, nn.Module):
        raise _Problem("error", f"{cls.__name__}(...) is {describe(module)}, not an nn.Module")
    reference = _reference_module(component, case)
    theirs = dict(reference.named_parameters())
    names = component.param_names(case) if component.param_names else {n: n for n in theirs}
    mine = dict(module.named_parameters())
    expected = ", ".join(f"{n} {tuple(theirs[r].shape)}" for n, r in names.items())
    for name, ref_name in names.items():
        if name not in mine:
            raise _Problem(
                "error",
                f"{cls.__name__}{case.init} has no parameter {name!r} of shape {tuple(theirs[ref_name].shape)}; "
                f"the checker copies the reference weights into parameters named: {expected}",
            )
        if mine[name].shape != theirs[ref_name].shape:
            raise _Problem(
                "error",
                f"{cls.__name__}{case.init}: parameter {name!r} has shape {tuple(mine[name].shape)}, "
                f"expected {tuple(theirs[ref_name].shape)}",
            )
    extra = [n for n in mine if n not in names]
    if extra:
        raise _Problem(
            "error",
            f"{cls.__name__}{case.init} has a parameter the reference does not: {extra[0]!r} "
            f"(biases? the reference layers have none: nn.Linear(..., bias=False)); expected exactly: {expected}",
        )
    with torch.no_grad():
        for name, ref_name in names.items():
            mine[name].copy_(theirs[ref_name])
    return module.to(case.dtype)


def _run(component: Component, impl, case: Case):
    """Call ``impl`` (the reader's, or a wrong variant) on one case and return its output."""
    case = Case(case.label, _clone(case.args), _clone(case.kwargs), case.init, case.dtype)
    with torch.no_grad():
        if component.run is not None:
            return component.run(impl, case)
        if component.kind == "class":
            module = _build_reader_module(component, impl, case)
            return module(*case.args, **case.kwargs)
        return impl(*case.args, **case.kwargs)


def expected_outputs(component: Component) -> list[dict]:
    """Each reference's output on each case: [{who: output}], in the order of component.cases().

    Computed before the reader's code runs (in the parent process, outside the time limit),
    which also warms up PyTorch's lazily initialised parts (torch.optim) for the children."""
    return [_expected(component, case) for case in component.cases()]


def _expected(component: Component, case: Case) -> dict:
    """Each reference's output on ``case``: {who: output}."""
    out = {}
    with torch.no_grad():
        for who, reference in component.references.items():
            if component.kind == "class":
                module = _reference_module(component, case)
                out[who] = module(*case.args) if reference is None else reference(case, module)
            else:
                out[who] = reference(case)
    return out


# ----------------------------------------------------------------- comparisons


def _fmt_index(index) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _tensor_difference(component: Component, case: Case, expected: torch.Tensor, got) -> list[str]:
    """[] when ``got`` matches ``expected``, else lines saying how it differs."""
    if not isinstance(got, torch.Tensor):
        return [f"returned {describe(got)}; expected a tensor of shape {tuple(expected.shape)}"]
    if got.shape != expected.shape:
        return [f"returned shape {tuple(got.shape)}; expected {tuple(expected.shape)}"]
    want_dtype = component.out_dtype or case.dtype
    if want_dtype is not None and got.dtype != want_dtype:
        why = " (the inputs are float64, so the output should be too)" if want_dtype == torch.float64 else ""
        return [f"returned dtype {got.dtype}; expected {want_dtype}{why}"]
    if got.dtype == torch.bool or expected.dtype == torch.bool:
        bad = got != expected
        tolerance = ""
    else:
        atol = component.atol.get(case.dtype or torch.float32, 1e-5)
        bad = ~torch.isclose(got.double(), expected.double(), rtol=atol, atol=atol)
        tolerance = f" (tolerance {atol:g})"
    if not bad.any():
        return []
    index = tuple(bad.nonzero()[0].tolist())
    e, g = expected[index].item(), got[index].item()
    where = f"first difference at {_fmt_index(index)}: " if index else ""
    lines = [f"{where}expected {e:.6g}, got {g:.6g}"]
    if got.dtype != torch.bool:
        finite = torch.isfinite(got)
        if not finite.all():
            lines.append(f"{int((~finite).sum())} of {got.numel()} values are nan or inf")
        else:
            lines.append(f"max error {(got.double() - expected.double()).abs().max().item():.3g}{tolerance}")
    return lines


def _difference(component: Component, case: Case, expected, got) -> list[str]:
    if isinstance(expected, torch.Tensor):
        return _tensor_difference(component, case, expected, got)
    if type(got) is not type(expected):
        return [f"returned {describe(got)}; expected a {type(expected).__name__}"]
    if got == expected:
        return []
    if isinstance(expected, list):
        if len(got) != len(expected):
            return [f"returned {len(got)} items, expected {len(expected)}: expected {expected}, got {got}"]
        i = next(i for i, (a, b) in enumerate(zip(expected, got)) if a != b)
        return [f"first difference at index {i}: expected {expected[i]!r}, got {got[i]!r}"]
    if isinstance(expected, dict):
        for key in expected:
            if key not in got:
                return [f"missing key {key!r} (expected {key!r}: {expected[key]!r})"]
            if got[key] != expected[key]:
                return [f"at key {key!r}: expected {expected[key]!r}, got {got[key]!r}"]
        key = next(k for k in got if k not in expected)
        return [f"unexpected key {key!r}: {got[key]!r}"]
    return [f"expected {expected!r}, got {got!r}"]


def _agree(component: Component, case: Case, a, b) -> bool:
    """Do two implementations' outputs agree (nan agreeing with nan)? For the detectors."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return False
        if a.dtype == torch.bool or b.dtype == torch.bool:
            return bool((a == b).all())
        atol = component.atol.get(case.dtype or torch.float32, 1e-5)
        return bool(torch.isclose(a.double(), b.double(), rtol=atol, atol=atol, equal_nan=True).all())
    return type(a) is type(b) and a == b


def _matching_mistakes(component: Component, cases: list[Case], outputs: list) -> list[str]:
    """The known mistakes whose wrong implementation gives the reader's outputs on every case."""
    found = []
    for mistake in component.mistakes:
        try:
            wrong = [_run(component, mistake.impl, case) for case in cases]
        except Exception:  # a wrong variant may fail on some inputs; then it is not this one
            continue
        if all(_agree(component, c, w, o) for c, w, o in zip(cases, wrong, outputs)):
            found.append(mistake.title)
    return found


# ------------------------------------------- calling the reference instead of writing it

# What each component is checked against, as a reader could call it instead of writing it:
# tinyformer's implementation and PyTorch's (dotted names; a tensor method as
# "torch.Tensor.softmax"). The building blocks a component is made of are not listed: torch.tril
# for a mask, F.linear and F.silu for SwiGLU, Counter for counting pairs, the reader's own
# cross_entropy for next_token_loss.
REFERENCE_CALLABLES: dict[str, tuple[str, ...]] = {
    "attention.softmax": ("torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax",
                          "torch.Tensor.softmax", "torch.nn.Softmax", "tinyformer.softmax"),
    "attention.scaled_dot_product_attention": ("torch.nn.functional.scaled_dot_product_attention",
                                               "tinyformer.scaled_dot_product_attention"),
    "masks.causal_mask": ("tinyformer.causal_mask",),
    "masks.masked_attention": ("torch.nn.functional.scaled_dot_product_attention",
                               "tinyformer.scaled_dot_product_attention"),
    "positions.sinusoidal_positions": ("tinyformer.sinusoidal_positional_encoding",
                                       "tinyformer.SinusoidalPositionalEncoding"),
    "positions.rope": ("tinyformer.RotaryPositionalEmbedding",),
    "multihead.MultiHeadAttention": ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward",
                                     "tinyformer.MultiHeadAttention"),
    "multihead.SwiGLU": ("tinyformer.SwiGLU",),
    "normalization.LayerNorm": ("torch.nn.functional.layer_norm", "torch.layer_norm", "torch.nn.LayerNorm",
                                "tinyformer.LayerNorm"),
    "normalization.RMSNorm": ("torch.nn.functional.rms_norm", "torch.rms_norm", "torch.nn.RMSNorm",
                              "tinyformer.RMSNorm"),
    "normalization.TransformerBlock": ("tinyformer.TransformerBlock",),
    "language_model.TransformerLM": ("tinyformer.TransformerLM",),
    "training.cross_entropy": ("torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss",
                               "tinyformer.cross_entropy"),
    "training.next_token_loss": ("tinyformer.lm_loss",),
    "training.adamw_step": ("torch.optim.AdamW", "tinyformer.AdamW"),
    "sampling.top_k_distribution": ("tinyformer.next_token_distribution",),
    "sampling.top_p_distribution": ("tinyformer.next_token_distribution",),
}

_EXERCISES_DIR = os.path.dirname(os.path.abspath(__file__))
# The checker's own files: what they call (the reference modules, AdamW's runner) is not the reader's.
_MACHINERY = {os.path.join(_EXERCISES_DIR, name) for name in ("checker.py", "component.py")} | {
    os.path.join(_EXERCISES_DIR, chapter, "checks.py") for chapter in CHAPTERS
}


@functools.lru_cache(maxsize=None)
def resolve(dotted: str):
    """The object a dotted name refers to ("torch.nn.functional.softmax"), or None."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def _code_of(obj):
    """The code object a Python callable runs, through decorators (functools.wraps)."""
    try:
        return inspect.unwrap(obj).__code__
    except (AttributeError, ValueError, TypeError):
        return None


class _References:
    """A component's reference callables, in the forms a call to them takes: Python code
    objects (functions; a class's own __init__, forward, step and __call__), C functions, and
    tensor methods by name."""

    def __init__(self, component: Component):
        self.objects: list[tuple[str, object]] = []
        self.codes: dict = {}
        self.builtins: dict[int, str] = {}
        self.tensor_methods: dict[str, str] = {}
        for dotted in REFERENCE_CALLABLES.get(component.qualname, ()):
            obj = resolve(dotted)
            if obj is None:
                continue
            self.objects.append((dotted, obj))
            if isinstance(obj, type):
                for name in ("__init__", "forward", "step", "__call__"):
                    code = _code_of(obj.__dict__.get(name))
                    if code is not None:
                        self.codes.setdefault(code, dotted)
            elif dotted.startswith("torch.Tensor."):
                self.tensor_methods[dotted.rsplit(".", 1)[1]] = dotted
            elif _code_of(obj) is not None:
                self.codes.setdefault(_code_of(obj), dotted)
            else:
                self.builtins[id(obj)] = dotted

    def identical(self, impl) -> tuple[str, str] | None:
        """(dotted name, "is" / "wraps" / "subclasses") when ``impl`` is a reference, wraps one
        (functools.partial, functools.wraps) or subclasses one; else None."""
        try:
            unwrapped = inspect.unwrap(impl)
        except ValueError:  # a __wrapped__ cycle
            unwrapped = impl
        wrapped = [unwrapped, impl.func] if isinstance(impl, functools.partial) else [unwrapped]
        for dotted, obj in self.objects:
            if impl is obj:
                return dotted, "is"
            if any(w is obj for w in wrapped):
                return dotted, "wraps"
            if isinstance(obj, type) and isinstance(impl, type) and issubclass(impl, obj):
                return dotted, "subclasses"
        return None

    @contextlib.contextmanager
    def watch(self):
        """Record the first call to a reference while the block runs (sys.setprofile sees
        Python and C calls alike), unless the checker itself made it. Yields a list that holds
        the reference's dotted name afterwards, if one was called."""
        found: list[str] = []
        if not self.objects:
            yield found
            return
        codes, builtins, methods = self.codes, self.builtins, self.tensor_methods

        def profile(frame, event, arg):
            if found:
                return
            if event == "call":
                dotted = codes.get(frame.f_code)
                caller = frame.f_back
            elif event == "c_call":
                dotted = builtins.get(id(arg))
                if dotted is None and methods:
                    name = getattr(arg, "__name__", None)
                    if name in methods and isinstance(getattr(arg, "__self__", None), torch.Tensor):
                        dotted = methods[name]
                caller = frame
            else:
                return
            if dotted is not None and (caller is None or caller.f_code.co_filename not in _MACHINERY):
                found.append(dotted)

        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            yield found
        finally:
            sys.setprofile(previous)


def _reference_note(component: Component, dotted: str, how: str) -> str:
    return (f"note: your {component.name} {how} {dotted}, the reference it is checked against: it passes, "
            f"but write it yourself")


# ------------------------------------------------------------ one component


def _where(exc: BaseException) -> str:
    """The innermost traceback line in the reader's code (not torch's, not the checker's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith((_HERE, _TORCH_DIR))]
    if not frames:
        return ""
    f = frames[-1]
    return f" ({os.path.basename(f.filename)}, line {f.lineno}: {(f.line or '').strip()})"


def _kind_problem(component: Component, impl) -> str | None:
    if component.kind == "class":
        if not (isinstance(impl, type) and issubclass(impl, nn.Module)):
            return f"{component.name} should be a class (a subclass of nn.Module); got {describe(impl)}"
    elif isinstance(impl, type) or not callable(impl):
        return f"{component.name} should be a function; got {describe(impl) if not isinstance(impl, type) else 'a class'}"
    return None


def evaluate(component: Component, impl, expected: list[dict] | None = None) -> Result:
    """Check ``impl`` against every reference on every case, in this process.
    ``expected``: :func:`expected_outputs`, if already computed."""
    name = component.qualname
    problem = _kind_problem(component, impl)
    if problem:
        return Result(name, "error", problem)
    cases = component.cases()
    outputs = []
    shortcuts, called = _References(component), []
    for case in cases:
        try:
            with shortcuts.watch() as calls:
                outputs.append(_run(component, impl, case))
            called += calls
        except NotImplementedError as exc:
            return Result(name, "todo", "not yet implemented" + (f" ({exc})" if str(exc) else ""))
        except _Problem as exc:
            return Result(name, exc.status, exc.message)
        except WrongReturn as exc:
            return Result(name, "fail", str(exc), [f"case: {case.label}"])
        except Exception as exc:
            return Result(
                name, "error", f"raised {type(exc).__name__}: {exc}{_where(exc)}".replace("\n", " "), [f"case: {case.label}"]
            )
    expected = expected or expected_outputs(component)
    for case, got, references in zip(cases, outputs, expected):
        for who, want in references.items():
            lines = _difference(component, case, want, got)
            if lines:
                mistakes = _matching_mistakes(component, cases, outputs)
                details = [f"case: {case.label}", f"vs {who}: {lines[0]}", *(f"  {line}" for line in lines[1:])]
                hints = {m.title: m.hint for m in component.mistakes}
                found = findings(component, impl, cases, outputs, [next(iter(e.values())) for e in expected],
                                 [(m, hints[m]) for m in mistakes])
                details += [f.line for f in found]
                return Result(name, "fail", f"wrong on {case.label}", details, mistakes, kinds=[f.kind for f in found])
    result = Result(name, "pass", f"{len(cases)} cases, vs {' and '.join(component.references)}")
    dotted, how = shortcuts.identical(impl) or ((called[0], "calls") if called else ("", ""))
    if dotted:
        result.reference_call = dotted
        result.details.append(_reference_note(component, dotted, how))
    return result


def diagnose(impl, name: str) -> list[str]:
    """The known mistakes ``impl``'s outputs match (whether or not it passes). In-process, no timeout."""
    component = find_component(name)
    cases = component.cases()
    outputs = [_run(component, impl, case) for case in cases]
    return _matching_mistakes(component, cases, outputs)


# -------------------------------------------------- isolation and time limits


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters written to it and counts the
    rest: printing 50 MB costs a count, not 50 MB of memory, pipe and report."""

    def __init__(self, limit: int = OUTPUT_LIMIT):
        super().__init__()
        self.limit, self.chars, self.line_ends, self._kept, self._last = limit, 0, 0, [], ""

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - min(self.chars, self.limit)
        if room:
            self._kept.append(text[:room])
        self.chars += len(text)
        self.line_ends += text.count("\n")
        self._last = text[-1:] or self._last
        return len(text)

    @property
    def lines(self) -> int:
        return self.line_ends + (1 if self._last not in ("", "\n") else 0)

    def getvalue(self) -> str:
        return "".join(self._kept)


def _capture(job, *, in_child: bool = False) -> Result:
    """Run ``job()`` -> Result, keeping (the start of) what it prints. In a forked child a
    KeyboardInterrupt can only be the reader's own (the child ignores Ctrl-C, which the parent
    handles), so it is reported like any exception."""
    caught = (Exception, SystemExit, KeyboardInterrupt) if in_child else (Exception, SystemExit)
    buffer = _CappedText()
    with redirect_stdout(buffer), redirect_stderr(buffer):
        try:
            result = job()
        except _Timeout:
            raise
        except caught as exc:  # the checker itself must never take the run down
            result = Result("?", "error", f"raised {type(exc).__name__}: {exc}{_where(exc)}".replace("\n", " "))
    result.output = buffer.getvalue()
    result.output_chars, result.output_lines = buffer.chars, buffer.lines
    return result


def _child(conn, job) -> None:
    # Ctrl-C at the terminal reaches the whole process group: the parent stops the run (and
    # kills this child); a KeyboardInterrupt here is then only one the reader's code raised.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked child must not enter the OpenMP thread pool the parent already started: that
    # pool's threads do not exist here, and the first parallel op would wait for them forever.
    # One thread runs every op inline (and these inputs are tiny).
    torch.set_num_threads(1)
    try:
        try:
            result = _capture(job, in_child=True)
        except BaseException as exc:  # a fault of the checker's own: still a verdict, not a silent exit
            result = Result("?", "error", f"the checker itself failed: {type(exc).__name__}: {exc}")
        conn.send(result)
    finally:
        conn.close()
        os._exit(0)  # skip the parent's atexit handlers and buffers, inherited by fork


def _crashed(label: str, process) -> Result:
    """The child ended without sending a verdict: say how it ended."""
    process.join(5)  # exitcode is None until the process has been waited for
    code = process.exitcode
    if code is None:
        how = "it ended without a verdict"
    elif code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    return Result(label, "error", f"the check crashed ({how}): your code ended the process (os._exit, a crash in C?)")


def validate_timeout(timeout) -> float:
    """``timeout`` as seconds, or ValueError naming the allowed range (nan, inf and 1e300 would
    overflow the timers or never end)."""
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"timeout must be a number of seconds, got {timeout!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
        raise ValueError(f"timeout must be positive and at most {MAX_TIMEOUT:g} seconds, got {timeout!r}")
    return seconds


def _run_limited(job, label: str, timeout: float, isolate: bool) -> Result:
    """``job()`` in a forked child killed after ``timeout`` seconds (or, without fork, in this
    process under an alarm, which stops Python-level loops but not one long C call)."""
    if isolate and "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_child, args=(send, job), daemon=True)
        process.start()
        send.close()
        try:
            if receive.poll(timeout):
                result = receive.recv()
            elif process.is_alive():
                result = Result(label, "timeout", f"timed out after {timeout:g} s (an infinite loop?)")
            else:
                result = _crashed(label, process)
        except EOFError:
            result = _crashed(label, process)
        finally:
            if process.is_alive():
                process.kill()
            process.join()
            receive.close()
        return result
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM"):

        def on_alarm(signum, frame):
            raise _Timeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return _capture(job)
        except _Timeout:
            return Result(label, "timeout", f"timed out after {timeout:g} s (an infinite loop?)")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous or signal.SIG_DFL)
    return _capture(job)


# ------------------------------------------------------ the reader's folder


def _load_from_dir(directory: Path, component: Component):
    """Import ``directory/<chapter>.py`` (as a module of a package, so the reader's files can
    import each other: ``from .multihead import SwiGLU``) and return the component."""
    path = directory / f"{component.chapter}.py"
    if not path.is_file():
        raise _Problem("missing", f"{path.name} not found in {directory} (python -m tinyformer.exercises init {directory})")
    package = types.ModuleType(_READER_PACKAGE)
    package.__path__ = [str(directory)]
    sys.modules[_READER_PACKAGE] = package
    sys.path.insert(0, str(directory))  # `from multihead import SwiGLU` works too
    importlib.invalidate_caches()  # files written since the last check (in this process)
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in their folder
    try:
        module = importlib.import_module(f"{_READER_PACKAGE}.{component.chapter}")
    except SyntaxError as exc:
        where = f"{os.path.basename(exc.filename or path.name)}, line {exc.lineno}"
        raise _Problem("error", f"syntax error in {where}: {exc.msg}") from None
    except NotImplementedError:
        raise _Problem("todo", "not yet implemented") from None
    except Exception as exc:
        raise _Problem("error", f"importing {path.name} raised {type(exc).__name__}: {exc}{_where(exc)}") from None
    finally:
        sys.dont_write_bytecode = write_bytecode
    if not hasattr(module, component.name):
        what = "class" if component.kind == "class" else "function"
        raise _Problem("missing", f"{path.name} has no {what} named {component.name!r}")
    return getattr(module, component.name)


def _forget_reader_modules(directory: Path) -> None:
    """Unload the reader's files, so the next check (in this process) reads them afresh."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name == _READER_PACKAGE or name.startswith(_READER_PACKAGE + ".") or path.startswith(str(directory) + os.sep):
            del sys.modules[name]


def _dir_job(directory: Path, component: Component):
    expected = expected_outputs(component)

    def job() -> Result:
        try:
            try:
                impl = _load_from_dir(directory, component)
            except _Problem as exc:
                return Result(component.qualname, exc.status, exc.message)
            finally:
                if sys.path[:1] == [str(directory)]:
                    sys.path.pop(0)
            return evaluate(component, impl, expected)
        finally:
            _forget_reader_modules(directory)

    return job


# ------------------------------------------------------------------ public API


def find_component(name: str) -> Component:
    """A component by name: ``"softmax"`` or ``"attention.softmax"``."""
    key = name.split(".")[-1]
    if key not in BY_NAME or ("." in name and name.split(".")[0] != BY_NAME[key].chapter):
        raise ValueError(f"unknown component {name!r}; the components are: {', '.join(c.qualname for c in COMPONENTS)}")
    return BY_NAME[key]


def _check_many(components, make_job, timeout: float, isolate: bool, quiet: bool, out) -> Report:
    """Run ``make_job(component)()`` for each component, under the time limit, printing a
    numbered line as each finishes (the progress counter)."""
    results = []
    width = len(str(len(components)))
    for i, component in enumerate(components, start=1):
        result = _run_limited(make_job(component), component.qualname, timeout, isolate)
        result.component = component.qualname
        results.append(result)
        if not quiet:
            first, *rest = result.lines()
            print(f"[{i:>{width}}/{len(components)}] {first}", file=out)
            for line in rest:
                print(" " * (2 * width + 4) + line, file=out)
            out.flush()
    report = Report(results)
    if not quiet and len(results) > 1:
        n_pass = sum(r.passed for r in results)
        todo = sum(r.status == "todo" for r in results)
        tail = f", {todo} not yet implemented" if todo else ""
        print(f"{n_pass} of {len(results)} components pass{tail}.", file=out)
    return report


def check(impl, name: str, *, timeout: float = DEFAULT_TIMEOUT, isolate: bool = True, quiet: bool = False, out=None) -> Report:
    """Check one implementation, e.g. ``check(softmax, "softmax")`` or ``check(MyNorm, "RMSNorm")``.

    Prints a ✓/✗ line (and, on failure, what was expected, what came back, and the
    name of the mistake when it is a known one) and returns a :class:`Report`.
    """
    timeout = validate_timeout(timeout)
    component = find_component(name)

    def make_job(component):
        expected = expected_outputs(component)
        return lambda: evaluate(component, impl, expected)

    return _check_many([component], make_job, timeout, isolate, quiet, out or sys.stdout)


def check_dir(directory, chapter: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, isolate: bool = True, quiet: bool = False, out=None) -> Report:
    """Check the files ``init`` wrote in ``directory`` (all chapters, or one). They are imported
    and run with your own rights, like any script you run: check only code you trust."""
    timeout = validate_timeout(timeout)
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"no folder {directory}: create the starter files with python -m tinyformer.exercises init {directory}")
    if chapter is not None and chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; the chapters are: {', '.join(CHAPTERS)}")
    components = [c for c in COMPONENTS if chapter in (None, c.chapter)]
    out = out or sys.stdout
    if not quiet:
        print(f"Checking {len(components)} components in {directory}", file=out)
    return _check_many(components, lambda c: _dir_job(directory, c), timeout, isolate, quiet, out)
