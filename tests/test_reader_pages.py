"""What a reader sees on the built pages: the lesson, not the build's machinery.

A chapter checks its sentences with ``claim(...)``, quotes numbers with ``glue(...)`` and writes
figure descriptions with ``describe_figure(...)``; those run in cells the page does not show, so
that every visible line is one a reader could type. This measures the share of visible code lines
that are still machinery, on the built HTML.
"""

from __future__ import annotations

import ast

import pytest
from bs4 import BeautifulSoup

from site_build import HTML, build_site, notebook_files

pytestmark = pytest.mark.book

MACHINERY_CALLS = {"claim", "glue", "describe_figure"}
MACHINERY_MODULES = ("tinyformer.book.claims",)
MAX_SHARE = 0.05  # of the visible code lines, over the whole book


def _code_lines(source: str) -> list[int]:
    return [i for i, line in enumerate(source.splitlines(), 1) if line.strip() and not line.strip().startswith("#")]


def machinery_lines(source: str) -> tuple[int, int]:
    """(machinery lines, code lines) of one cell: statements that call claim/glue/describe_figure,
    import them, or are loops and branches that hold nothing else."""
    code = _code_lines(source)
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: not machinery
        return 0, len(code)

    def is_machinery(stmt) -> bool:
        if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Call):
            func = stmt.value.func
            return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) in MACHINERY_CALLS
        if isinstance(stmt, ast.ImportFrom):
            names = {alias.name for alias in stmt.names}
            return stmt.module in MACHINERY_MODULES or names <= MACHINERY_CALLS
        if isinstance(stmt, (ast.For, ast.If, ast.With)):
            return all(map(is_machinery, stmt.body)) and all(map(is_machinery, getattr(stmt, "orelse", [])))
        return False

    marked: set[int] = set()

    def visit(body):
        for stmt in body:
            if is_machinery(stmt):
                marked.update(range(stmt.lineno, stmt.end_lineno + 1))
            else:
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(stmt, field, None) or [])

    visit(tree.body)
    return len(marked & set(code)), len(code)


def test_machinery_is_recognised():
    cell = ("scores = Q @ K.T\nprint(scores)\nglue('x', 1.0)\nclaim('rows sum to 1',\n      True, total=1.0)\n"
            "for name in names:\n    glue(name, 2)\nfrom tinyformer.book.claims import claim\n")
    assert machinery_lines(cell) == (6, 8)
    assert machinery_lines("%matplotlib inline\nx = 1") == (0, 2)


@pytest.fixture(scope="module")
def pages():
    result = build_site()
    assert result["returncode"] == 0, "strict build failed:\n" + result["log"][-6000:]
    return {name: BeautifulSoup((HTML / f"{name}.html").read_text(encoding="utf-8"), "html.parser")
            for name in notebook_files()}


def test_visible_code_is_the_lesson(pages):
    counts = {name: [machinery_lines(pre.get_text()) for pre in page.select("div.cell_input pre")]
              for name, page in pages.items()}
    per_page = {name: (sum(m for m, _ in cells), sum(t for _, t in cells)) for name, cells in counts.items()}
    machinery = sum(m for m, _ in per_page.values())
    total = sum(t for _, t in per_page.values())
    report = ", ".join(f"{name} {m}/{t}" for name, (m, t) in per_page.items() if m)
    print(f"visible code lines that are machinery: {machinery} of {total} ({machinery / total:.1%}); {report}")
    assert total > 500, "the chapters show almost no code: did a tag hide the lessons?"
    assert machinery / total <= MAX_SHARE, f"{machinery} of {total} visible code lines are machinery: {report}"
