"""Book build times: cold (nothing cached), no-change rebuild, and one chapter's code edited.

    python benchmarks/bench_build.py

Runs `jupyter-book build book/ -W --keep-going` three times. The cold build uses an empty
_build/ and an empty training-run cache (TINYFORMER_CACHE), as on a fresh clone.
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
    subprocess.run([str(jb), "build", "book/", "-W", "--keep-going"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TINYFORMER_CACHE": cache}
        shutil.rmtree(ROOT / "_build", ignore_errors=True)
        cold = build(env)
        unchanged = build(env)
        original = CHAPTER.read_text()
        try:
            # one edited code cell: jupyter-cache re-executes this chapter only
            CHAPTER.write_text(original.replace("X = torch.randn(T, d_model)", "X = torch.randn(T, d_model)  # edited", 1))
            edited = build(env)
        finally:
            CHAPTER.write_text(original)
    rows = [{"build": "cold (fresh clone)", "seconds": cold},
            {"build": "no change", "seconds": unchanged},
            {"build": "one chapter's code edited", "seconds": edited}]
    print_table(rows, ["build", "seconds"])
    write_json("build", "python benchmarks/bench_build.py", {"rows": rows})


if __name__ == "__main__":
    main()
