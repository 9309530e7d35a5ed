"""Build the book once per test session and share the result (book and browser tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
_result: dict | None = None


def toc_files() -> list[str]:
    """Every document named in _toc.yml, root first, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def notebook_files() -> list[str]:
    """Documents that execute code (MyST-NB text notebooks)."""
    return [f for f in toc_files() if (ROOT / "book" / f"{f}.md").read_text(encoding="utf-8").startswith("---\njupytext:")]


def build_site() -> dict:
    """Strict build into _build/html (the execution cache makes a no-change rebuild fast)."""
    global _result
    if _result is None:
        subprocess.run([sys.executable, str(ROOT / "tasks.py"), "sync-toc"], check=True, cwd=ROOT)
        jb = Path(sys.executable).parent / "jupyter-book"
        start = time.perf_counter()
        proc = subprocess.run(
            [str(jb), "build", "book/", "-W", "--keep-going"], cwd=ROOT, capture_output=True, text=True
        )
        _result = {"returncode": proc.returncode, "log": proc.stdout + proc.stderr, "seconds": time.perf_counter() - start}
    return _result
