"""Build the book once per test session and share the result (book and browser tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
sys.path.insert(0, str(ROOT / "_ext"))
from book_toc import notebook_files, toc_files  # noqa: E402  (the TOC, read as the build reads it)
_result: dict | None = None


def build_site() -> dict:
    """Strict build into _build/html (the execution cache makes a no-change rebuild fast)."""
    global _result
    if _result is None:
        jb = Path(sys.executable).parent / "jupyter-book"
        start = time.perf_counter()
        proc = subprocess.run(
            [str(jb), "build", "book/", "-W", "--keep-going"], cwd=ROOT, capture_output=True, text=True
        )
        _result = {"returncode": proc.returncode, "log": proc.stdout + proc.stderr, "seconds": time.perf_counter() - start}
    return _result
