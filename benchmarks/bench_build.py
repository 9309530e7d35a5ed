"""Book build times: cold (nothing cached), no-change rebuild, and one chapter's code edited.

    python benchmarks/bench_build.py

Runs `jupyter-book build book/ -W --keep-going` three times. The cold build uses an empty
_build/ and an empty training-run cache (TINYFORMER_CACHE), as on a fresh clone; each
chapter's execution time in it (from jupyter-cache's records) is printed too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_table, write_json

CHAPTER = ROOT / "book" / "attention.md"


def build(env) -> float:
    jb = Path(sys.executable).parent / "jupyter-book"
    start = time.perf_counter()
    log = Path(tempfile.gettempdir()) / "tinyformer-bench-build.log"
    with open(log, "w") as out:
        proc = subprocess.run([str(jb), "build", "book/", "-W", "--keep-going"], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"the build failed (exit {proc.returncode}); its log: {log}")
    return time.perf_counter() - start


def chapter_seconds() -> list[dict]:
    """Each chapter's execution time in the last build, as jupyter-cache recorded it."""
    from jupyter_cache import get_cache

    caches = [p for p in (ROOT / "_build" / ".jupyter_cache").glob("tinyformer-*") if (p / "global.db").exists()]
    newest = max(caches, key=lambda p: (p / "global.db").stat().st_mtime)
    rows = [{"chapter": Path(r.uri).stem, "seconds": r.data.get("execution_seconds", float("nan"))}
            for r in get_cache(str(newest)).list_cache_records()]
    return sorted(rows, key=lambda r: -r["seconds"])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TINYFORMER_CACHE": cache}
        shutil.rmtree(ROOT / "_build", ignore_errors=True)
        cold = build(env)
        chapters = chapter_seconds()
        unchanged = build(env)
        original = CHAPTER.read_text()
        try:
            # one edited code cell: jupyter-cache re-executes this chapter only
            line = "X = torch.randn(T, D)"
            if line not in original:
                raise SystemExit(f"{CHAPTER.name} no longer has the line {line!r} this benchmark edits: update it")
            CHAPTER.write_text(original.replace(line, line + "  # edited", 1))
            edited = build(env)
        finally:
            CHAPTER.write_text(original)
    rows = [{"build": "cold (fresh clone)", "seconds": cold},
            {"build": "no change", "seconds": unchanged},
            {"build": "one chapter's code edited", "seconds": edited}]
    print_table(rows, ["build", "seconds"])
    print_table(chapters, ["chapter", "seconds"])
    write_json("build", "python benchmarks/bench_build.py", {"rows": rows, "chapters_cold": chapters})


if __name__ == "__main__":
    main()
