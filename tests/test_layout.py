"""The import direction: the library never imports the book's kit or the exercise track.

Three audiences, arrows one way: ``tinyformer/`` (every module and subpackage except ``book/``
and ``exercises/``) is the library a reader imports; ``tinyformer/book/`` (what the chapters use
to show things) and ``tinyformer/exercises/`` (the reader's exercise track) import the library,
and neither imports the other. The modules are parsed, not imported, so an import inside a
function (or one that never runs) counts as much as one at the top.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tinyformer"
KIT, EXERCISES = "tinyformer.book", "tinyformer.exercises"
NOT_LIBRARY = (KIT, EXERCISES)
# who may not import whom: the library neither; the kit and the exercises not each other
FORBIDDEN = {"library": NOT_LIBRARY, KIT: (EXERCISES,), EXERCISES: (KIT,)}


def module_name(path: Path) -> str:
    """``tinyformer/book/page.py`` -> ``tinyformer.book.page``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def audience(module: str) -> str:
    for part in NOT_LIBRARY:
        if module == part or module.startswith(part + "."):
            return part
    return "library"


def imported_names(path: Path) -> list[tuple[int, str, str]]:
    """Every module ``path`` imports, as ``(line, absolute module name, the statement)``.

    Relative imports are resolved against the file's package; ``from X import Y`` yields both
    ``X`` and ``X.Y`` (Y may be a submodule: ``from tinyformer import book``), and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name count too.
    """
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        statement = " ".join(line.strip() for line in lines[node.lineno - 1 : node.end_lineno]) \
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)) else ""
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, statement) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base, statement))
            found += [(node.lineno, f"{base}.{alias.name}", statement) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                target = node.args[0].value
                if target.startswith(".") and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    target = node.args[1].value + target  # import_module(".x", "pkg"): one level only
                found.append((node.lineno, target, statement))
    return found


def violations(path: Path) -> list[str]:
    who = audience(module_name(path))
    bad = []
    for line, name, statement in imported_names(path):
        for banned in FORBIDDEN[who]:
            if name == banned or name.startswith(banned + "."):
                where = "the library" if who == "library" else who
                bad.append(f"{path.relative_to(ROOT)}:{line}: {where} imports {banned} ({statement.strip()!r})")
                break
    return sorted(set(bad))


ALL_FILES = sorted(PACKAGE.rglob("*.py"))
LIBRARY_FILES = [p for p in ALL_FILES if audience(module_name(p)) == "library"]


def test_the_tree_has_all_three_audiences():
    assert {audience(module_name(p)) for p in ALL_FILES} == {"library", KIT, EXERCISES}
    assert PACKAGE / "model.py" in LIBRARY_FILES and PACKAGE / "__init__.py" in LIBRARY_FILES


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    bad = violations(path)
    assert not bad, "imports against the direction library <- kit, library <- exercises:\n" + "\n".join(bad)


@pytest.mark.parametrize("relative_to, source, line, banned", [
    ("tinyformer/model.py", "from .book import plots", 1, KIT),
    ("tinyformer/__init__.py", "from . import exercises", 1, EXERCISES),
    ("tinyformer/train/loop.py", "def f():\n    from ..book.plots import WIDTH", 2, KIT),  # inside a function
    ("tinyformer/data.py", "import tinyformer.exercises.checker", 1, EXERCISES),
    ("tinyformer/data.py", "from tinyformer import book", 1, KIT),
    ("tinyformer/data.py", "import importlib\nimportlib.import_module('tinyformer.book.page')", 2, KIT),
    ("tinyformer/book/page.py", "from ..exercises import check", 1, EXERCISES),
    ("tinyformer/exercises/checker.py", "from tinyformer.book.plots import WIDTH", 1, KIT),
])
def test_the_check_catches_each_way_of_importing(tmp_path, monkeypatch, relative_to, source, line, banned):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    path = tmp_path / relative_to
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source + "\n")
    bad = violations(path)
    assert len(bad) == 1 and bad[0].startswith(f"{relative_to}:{line}: ") and f"imports {banned} (" in bad[0], bad


def test_allowed_imports_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    for relative_to, source in [("tinyformer/book/page.py", "from ..model import preset\nfrom . import claims"),
                                ("tinyformer/exercises/checker.py", "import tinyformer as tf\nfrom .. import layers"),
                                ("tinyformer/model.py", "from .layers import Linear\nimport bookkeeping")]:
        path = tmp_path / relative_to
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source + "\n")
        assert violations(path) == []


def test_the_library_imports_no_plotting_and_none_of_the_kit():
    """``import tinyformer`` (and each library module) loads neither matplotlib nor the kit or exercises."""
    modules = sorted(module_name(p) for p in LIBRARY_FILES if p.stem != "__main__")  # __main__ would run
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'matplotlib' or m.startswith(('tinyformer.book', 'tinyformer.exercises')))))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the library loaded {loaded}"


def test_importing_the_kit_writes_nothing_to_stderr_in_a_kernel():
    """A chapter imports the kit in a Jupyter kernel, where ``import tqdm.auto`` warns on stderr when
    ipywidgets is missing, and the strict build refuses any stderr. So no module of the library or
    the kit imports tqdm.auto (or anything that writes) when it is imported; progress bars import it
    when they are shown."""
    kit = sorted(f"tinyformer.book.{p.stem}" for p in (ROOT / "tinyformer" / "book").glob("*.py")
                 if p.stem not in ("__init__", "__main__"))
    code = ("import importlib, json, sys\n"
            f"for name in {kit!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tqdm.auto'))))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], "a module imports tqdm.auto when imported"
    assert result.stderr == ""
