"""The mutation suite: how often the checker catches a mistake, and how often it names its kind.

Mutants of the reference solutions are made mechanically with ``ast``, one change each, inside
the component's own function or class: swap an operator (+ -, * /, < <=), change a constant or an
exponent, change an axis (dim=), drop or duplicate a term or a statement, drop a transpose, drop a
unary ~ or -, swap a function for its sibling (sin cos, amax amin, sum mean), off-by-one in a
slice, a range or a comparison. A mutant whose outputs equal the solution's, on the check's cases
and on fresh random inputs of the same shapes, changes nothing and is dropped.

Each kept mutant is checked as a reader's code would be. *Caught*: the checker fails it.
*Diagnosed*: the lines it prints name a kind of mistake (probes.Finding.kind) that the
mutation can cause: each operator lists those kinds (:data:`RIGHT_KINDS`); a line of another kind
is a wrong diagnosis and the mutant counts as not diagnosed. An error raised by the mutant or a
wrong shape/dtype is reported before any numbers, with the line or the shapes, and counts as
diagnosed ("crash").

    python -m tinyformer.exercises.mutations [--chapter NAME] [--sample N]
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import inspect
import random
import sys
import textwrap
import types
from dataclasses import dataclass, field

import torch

from .checker import Result, _agree, _run, _run_limited, evaluate, expected_outputs
from .component import Case, Component
from .registry import CHAPTERS, COMPONENTS

# Which diagnosis kinds are right for each mutation operator. "crash" (an exception or a wrong
# shape or dtype, reported with its line) is right for all of them; "cases" (only which cases
# fail) is never a diagnosis.
_VALUE = {"scale", "invariant", "overflow", "subset", "grows", "locate", "catalogue", "offbyone", "ignores"}
RIGHT_KINDS: dict[str, set[str]] = {
    "swap operator": _VALUE | {"causal"},
    "change constant": _VALUE | {"causal"},
    "change exponent": _VALUE,
    "change size": _VALUE | {"axis"},
    "change axis": {"axis", "invariant", "subset", "catalogue", "locate", "causal", "ignores"},
    "drop term": _VALUE | {"causal"},
    "duplicate term": _VALUE,
    "drop statement": _VALUE | {"causal", "axis"},
    "duplicate statement": _VALUE,
    "drop transpose": {"axis", "invariant", "subset", "catalogue", "causal", "locate"},
    "drop unary": _VALUE | {"causal"},
    "swap function": _VALUE | {"axis"},
    "off by one": {"offbyone", "overflow", "subset", "invariant", "causal", "catalogue", "grows", "ignores", "locate"},
}
for kinds in RIGHT_KINDS.values():
    kinds.add("crash")

_AXIS_CALLS = {"transpose", "sum", "mean", "amax", "amin", "max", "min", "softmax", "cumsum", "unsqueeze", "squeeze",
               "gather", "scatter", "cat", "stack", "flatten", "sort", "topk", "movedim", "view", "reshape", "tril", "triu"}
_AXIS_KEYWORDS = {"dim", "axis", "dims", "dim0", "dim1"}
_SIBLINGS = {"sin": "cos", "cos": "sin", "amax": "amin", "amin": "amax", "sum": "mean", "mean": "sum",
             "sqrt": "rsqrt", "exp": "expm1", "log": "log1p", "silu": "relu", "tril": "triu", "triu": "tril"}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult, ast.FloorDiv: ast.Div}
_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}


@dataclass
class Mutant:
    component: str  # "chapter.name"
    operator: str  # a key of RIGHT_KINDS
    where: str  # "line 12: e / e.sum(dim=dim, keepdim=True)  ->  e * e.sum(...)"
    source: str  # the mutated module's source


@dataclass
class Outcome:
    mutant: Mutant
    equivalent: bool = False
    caught: bool = False
    diagnosed: bool = False
    kinds: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _annotate(tree):
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            children = value if isinstance(value, list) else [value]
            for child in children:
                if isinstance(child, ast.AST):
                    child._tf_parent, child._tf_field = parent, name


def _int_const(node):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) is int:
        return -node.operand.value
    return None


def _context(node) -> str:
    """"axis", "index" (a slice, a range, a comparison) or "value" for a constant."""
    parent = getattr(node, "_tf_parent", None)
    if isinstance(parent, ast.arguments):  # a default value: an axis if the parameter is one
        params = parent.posonlyargs + parent.args
        named = dict(zip([a.arg for a in params][len(params) - len(parent.defaults):], parent.defaults))
        named.update({a.arg: d for a, d in zip(parent.kwonlyargs, parent.kw_defaults) if d is not None})
        return "axis" if any(d is node and name in _AXIS_KEYWORDS for name, d in named.items()) else "value"
    if isinstance(parent, ast.Subscript) and isinstance(parent.value, ast.Attribute) and parent.value.attr == "shape":
        return "size"
    if isinstance(parent, ast.keyword):
        return "axis" if parent.arg in _AXIS_KEYWORDS else "value"
    if isinstance(parent, ast.Call):
        fn = parent.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
        if name == "range":
            return "index"
        if name in _AXIS_CALLS and node in parent.args:
            return "axis"
    node_up = node
    while parent is not None and not isinstance(parent, (ast.stmt,)):
        if isinstance(parent, (ast.Slice, ast.Compare)) or (isinstance(parent, ast.Subscript) and node_up is parent.slice):
            return "index"
        node_up, parent = parent, getattr(parent, "_tf_parent", None)
    return "value"


def _const(value):
    return ast.UnaryOp(ast.USub(), ast.Constant(-value)) if isinstance(value, (int, float)) and value < 0 else ast.Constant(value)


def _choices(node) -> list[tuple[str, ast.AST]]:
    """(operator, replacement) for each single change of ``node`` itself."""
    out = []
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        new = copy.deepcopy(node)
        new.op = _ARITH[type(node.op)]()
        out.append(("swap operator", new))
        if isinstance(node.op, ast.Pow):
            return out + [("change exponent", ast.BinOp(copy.deepcopy(node.left), ast.Pow(), ast.BinOp(
                copy.deepcopy(node.right), ast.Add(), ast.Constant(1))))]
        out.append(("drop term", copy.deepcopy(node.left)))
        if not isinstance(node.op, (ast.Div, ast.FloorDiv)):
            out.append(("drop term", copy.deepcopy(node.right)))
        if isinstance(node.op, (ast.Add, ast.Sub)):
            out.append(("duplicate term", ast.BinOp(copy.deepcopy(node), node.op.__class__(), copy.deepcopy(node.right))))
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        new = copy.deepcopy(node)
        new.ops = [_COMPARE[type(node.ops[0])]()]
        out.append(("off by one", new))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Invert, ast.USub)) and not isinstance(node.operand, ast.Constant):
        out.append(("drop unary", copy.deepcopy(node.operand)))
    elif (_int_const(node) is not None or (isinstance(node, ast.Constant) and type(node.value) is float)) \
            and not isinstance(getattr(node, "_tf_parent", None), ast.UnaryOp):
        value = _int_const(node) if _int_const(node) is not None else node.value
        where = _context(node)
        parent = getattr(node, "_tf_parent", None)
        exponent = isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Pow) and node is parent.right
        if where == "axis":
            for other in (value - 1, value + 1):
                out.append(("change axis", _const(other)))
        elif where == "size":
            for other in (value - 1, value + 1):
                out.append(("change size", _const(other)))
        elif where == "index" or type(value) is int:
            for other in (value - 1, value + 1):
                out.append(("off by one" if where == "index" else ("change exponent" if exponent else "change constant"), _const(other)))
        else:
            for other in ((value * 2, value / 2) if value else (1.0,)):
                out.append(("change exponent" if exponent else "change constant", _const(other)))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "transpose" and len(node.args) == 2:
            out.append(("drop transpose", copy.deepcopy(node.func.value)))
        elif node.func.attr in _SIBLINGS:
            new = copy.deepcopy(node)
            new.func.attr = _SIBLINGS[node.func.attr]
            out.append(("swap function", new))
    return out


def _statement_choices(stmt, body_index, body) -> list[tuple[str, list]]:
    """Drop or duplicate an assignment that updates a name already in use (x = f(x))."""
    if not isinstance(stmt, (ast.Assign, ast.AugAssign)):
        return []
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    used = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)}
    if isinstance(stmt, ast.AugAssign) or names & used:
        return [("drop statement", body[:body_index] + body[body_index + 1:]),
                ("duplicate statement", body[:body_index + 1] + [copy.deepcopy(stmt)] + body[body_index + 1:])]
    return []


def _node_choices(node, root) -> list:
    """(target, operator, replacement) for each single change at ``node``: the node itself, or a
    statement of its body (target (node, field))."""
    sites = [(node, op, new) for op, new in _choices(node)]
    for field_name in ("body", "orelse"):
        body = getattr(node, field_name, None)
        if isinstance(body, list) and node is not root:
            for i, stmt in enumerate(body):
                sites += [((node, field_name), op, new_body) for op, new_body in _statement_choices(stmt, i, body)]
    return sites


def _site_index(root) -> list[tuple[int, int]]:
    """(position in ast.walk order, option) of every single change under ``root``."""
    _annotate(root)
    return [(i, j) for i, node in enumerate(ast.walk(root)) for j in range(len(_node_choices(node, root)))]


def _replace(node, new):
    parent, name = node._tf_parent, node._tf_field
    value = getattr(parent, name)
    if isinstance(value, list):
        value[value.index(node)] = new
    else:
        setattr(parent, name, new)


def mutants(component: Component) -> list[Mutant]:
    """Every single-change mutant of ``component``'s reference solution."""
    module = importlib.import_module(f"{__package__}.{component.chapter}.solution")
    source = inspect.getsource(module)
    tree = ast.parse(source)
    index = next(i for i, n in enumerate(tree.body) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == component.name)
    out = []
    for position, option in _site_index(copy.deepcopy(tree.body[index])):
        tree_k = copy.deepcopy(tree)
        target = tree_k.body[index]
        _annotate(target)
        here = next(n for i, n in enumerate(ast.walk(target)) if i == position)
        node, op, new = _node_choices(here, target)[option]
        before = ast.unparse(node[0] if isinstance(node, tuple) else node).splitlines()[0][:60]
        lineno = getattr(node[0] if isinstance(node, tuple) else node, "lineno", 0)
        if isinstance(node, tuple):
            setattr(node[0], node[1], new)
            after = "(statement dropped or doubled)"
        else:
            _replace(node, new)
            after = ast.unparse(new).splitlines()[0][:60]
        ast.fix_missing_locations(tree_k)
        try:
            text = ast.unparse(tree_k)
        except Exception:
            continue
        out.append(Mutant(component.qualname, op, f"line {lineno}: {before}  ->  {after}", text))
    return out


def _load(mutant: Mutant, component: Component):
    module = types.ModuleType(f"{__package__}.{component.chapter}._mutant")
    module.__dict__["__package__"] = f"{__package__}.{component.chapter}"
    exec(compile(mutant.source, f"<mutant of {component.qualname}>", "exec"), module.__dict__)
    return getattr(module, component.name)


def _fresh(case: Case, seed: int) -> Case:
    """The case with every float tensor argument redrawn (same shape, dtype and spread)."""
    g = torch.Generator().manual_seed(seed)

    def redraw(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            spread = float(value.double().std()) if value.numel() > 1 else 1.0
            return (torch.randn(value.shape, generator=g, dtype=torch.float64) * spread).to(value.dtype)
        if isinstance(value, list):
            return [redraw(v) for v in value]
        return value

    return Case(case.label, tuple(redraw(a) for a in case.args), dict(case.kwargs), case.init, case.dtype)


def _changes_output(component: Component, impl, solution) -> bool:
    cases = component.cases()
    for case in [*cases, *(_fresh(c, 1000 + i) for i, c in enumerate(cases))]:
        try:
            if not _agree(component, case, _run(component, impl, case), _run(component, solution, case)):
                return True
        except Exception:
            return True
    return False


def judge(mutant: Mutant, component: Component, expected=None, timeout: float = 3.0) -> Outcome:
    """Check one mutant as the checker checks a reader (in a child with a time limit)."""
    solution = getattr(importlib.import_module(f"{__package__}.{component.chapter}.solution"), component.name)
    outcome = Outcome(mutant)

    def job() -> Result:
        try:
            impl = _load(mutant, component)
        except Exception as exc:
            return Result(component.qualname, "error", f"raised {type(exc).__name__}: {exc}", kinds=["crash"])
        if not _changes_output(component, impl, solution):
            return Result(component.qualname, "pass", "equivalent", kinds=["equivalent"])
        result = evaluate(component, impl, expected)
        if result.status != "fail":
            result.kinds = ["crash"]  # raised, or a wrong shape or dtype: said before any numbers
        elif any(("returned shape" in line or "returned dtype" in line or "; expected a" in line)
                 for line in result.details[:2]):
            result.kinds = ["crash"]  # a wrong shape, dtype or kind of value: said before any numbers
        return result

    result = _run_limited(job, component.qualname, timeout, True)
    if result.status == "timeout":
        result.kinds = ["crash"]
    outcome.equivalent = result.kinds == ["equivalent"]
    outcome.caught = not result.passed
    outcome.kinds = [k for k in result.kinds if k != "cases"]
    outcome.lines = result.lines()
    right = RIGHT_KINDS[mutant.operator]
    shown = [k for k in result.kinds if k != "cases"]
    outcome.diagnosed = outcome.caught and bool(shown) and all(k in right for k in shown)
    return outcome


def run_suite(chapters=None, sample: int | None = None, seed: int = 0, progress: bool = True) -> dict[str, list[Outcome]]:
    """Every kept mutant's outcome, by chapter. ``sample``: at most that many mutants per
    component, drawn with ``seed`` (the CI test's fixed sample)."""
    todo = []
    for component in COMPONENTS:
        if chapters and component.chapter not in chapters:
            continue
        found = mutants(component)
        if sample is not None and len(found) > sample:
            found = random.Random(f"{seed}:{component.qualname}").sample(found, sample)
        todo += [(component, m) for m in found]
    expected = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="mutants", unit="mutant", file=sys.stderr)
    by_chapter: dict[str, list[Outcome]] = {}
    for component, mutant in todo:
        if component.qualname not in expected:
            expected[component.qualname] = expected_outputs(component)
        outcome = judge(mutant, component, expected[component.qualname])
        if not outcome.equivalent:
            by_chapter.setdefault(component.chapter, []).append(outcome)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return by_chapter


def table(by_chapter: dict[str, list[Outcome]]) -> list[str]:
    rows = [f"{'chapter':<16} {'mutants':>7} {'caught':>7} {'diagnosed':>10} {'of which by error/shape':>24}"]
    total = []
    for chapter in CHAPTERS:
        outcomes = by_chapter.get(chapter, [])
        if not outcomes:
            continue
        total += outcomes
        rows.append(_row(chapter, outcomes))
    rows.append(_row("all", total))
    return rows


def _row(name, outcomes) -> str:
    n = len(outcomes)
    caught = sum(o.caught for o in outcomes) / n if n else 0
    diagnosed = sum(o.diagnosed for o in outcomes) / n if n else 0
    crash = sum(o.diagnosed and o.kinds == ["crash"] for o in outcomes) / n if n else 0
    return f"{name:<16} {n:>7} {caught:>7.0%} {diagnosed:>10.0%} {crash:>24.0%}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyformer.exercises.mutations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", choices=CHAPTERS, action="append", help="only this chapter (repeatable)")
    parser.add_argument("--sample", type=int, help="at most N mutants per component")
    parser.add_argument("--show", choices=("missed", "undiagnosed", "all"), help="print these mutants' reports")
    args = parser.parse_args(argv)
    by_chapter = run_suite(args.chapter, args.sample)
    if args.show:
        for outcomes in by_chapter.values():
            for o in outcomes:
                if args.show == "all" or (args.show == "missed" and not o.caught) or (args.show == "undiagnosed" and not o.diagnosed):
                    print(f"--- {o.mutant.component} [{o.mutant.operator}] {o.mutant.where}  kinds={o.kinds}")
                    print(textwrap.indent("\n".join(o.lines), "  "))
    print("\n".join(table(by_chapter)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
