"""The autograder: run a reader's implementation on seeded inputs, compare it with the
references, and, when it is wrong, say how, and name the mistake if it is a known one.

Each component is checked in a forked child process with a time limit, so code that
loops forever, crashes or prints a lot costs one line of the report, not the run.
"""

from __future__ import annotations

import copy
import importlib
import io
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
from .registry import BY_NAME, CHAPTERS, COMPONENTS

DEFAULT_TIMEOUT = 30.0  # seconds per component; the reference solutions need well under one
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
    output: str = ""  # what the reader's code printed

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def lines(self) -> list[str]:
        mark = "✓" if self.passed else "✗"
        out = [f"{mark} {self.component:<42} {self.summary}"]
        out += [f"    {line}" for line in self.details]
        printed = self.output.strip().splitlines()
        if printed:
            out.append(f"    your code printed ({len(printed)} lines{', first 10' if len(printed) > 10 else ''}):")
            out += [f"      {line}" for line in printed[:10]]
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
    for case in cases:
        try:
            outputs.append(_run(component, impl, case))
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
                details += [f"looks like: {m}. Hint: {hints[m]}" for m in mistakes]
                return Result(name, "fail", f"wrong on {case.label}", details, mistakes)
    return Result(name, "pass", f"{len(cases)} cases, vs {' and '.join(component.references)}")


def diagnose(impl, name: str) -> list[str]:
    """The known mistakes ``impl``'s outputs match (whether or not it passes). In-process, no timeout."""
    component = find_component(name)
    cases = component.cases()
    outputs = [_run(component, impl, case) for case in cases]
    return _matching_mistakes(component, cases, outputs)


# -------------------------------------------------- isolation and time limits


def _capture(job) -> Result:
    """Run ``job()`` -> Result, keeping what it prints."""
    buffer = io.StringIO()
    with redirect_stdout(buffer), redirect_stderr(buffer):
        try:
            result = job()
        except _Timeout:
            raise
        except (Exception, SystemExit) as exc:  # the checker itself must never take the run down
            result = Result("?", "error", f"raised {type(exc).__name__}: {exc}{_where(exc)}".replace("\n", " "))
    result.output = buffer.getvalue()
    return result


def _child(conn, job) -> None:
    # A forked child must not enter the OpenMP thread pool the parent already started: that
    # pool's threads do not exist here, and the first parallel op would wait for them forever.
    # One thread runs every op inline (and these inputs are tiny).
    torch.set_num_threads(1)
    try:
        conn.send(_capture(job))
    finally:
        conn.close()
        os._exit(0)  # skip the parent's atexit handlers and buffers, inherited by fork


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
                result = Result(label, "error", f"the check crashed (exit code {process.exitcode})")
        except EOFError:
            result = Result(label, "error", f"the check crashed (exit code {process.exitcode})")
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
    component = find_component(name)

    def make_job(component):
        expected = expected_outputs(component)
        return lambda: evaluate(component, impl, expected)

    return _check_many([component], make_job, timeout, isolate, quiet, out or sys.stdout)


def check_dir(directory, chapter: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, isolate: bool = True, quiet: bool = False, out=None) -> Report:
    """Check the files ``init`` wrote in ``directory`` (all chapters, or one)."""
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
