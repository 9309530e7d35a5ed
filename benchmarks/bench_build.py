"""Book build times for the cases a maintainer meets, against the budgets of a 2-core machine.

    python benchmarks/bench_build.py            # every case (about 25 minutes on 2 cores)
    python benchmarks/bench_build.py --skip-cold

Runs `jupyter-book build book/ -W --keep-going` once per case, in this order:

    cold (fresh clone)        empty _build/ and an empty training-run cache (TINYFORMER_CACHE)
    runs cached               empty _build/, the runs trained by the cold build kept
    no change                 nothing edited
    one chapter's prose       a sentence of book/attention.md edited: that page is re-rendered only
    one chapter's code        a code cell of book/attention.md edited: that chapter re-executes only
    a figure's colour         a colour of the book's figures (the kit's plots module) edited:
                              every chapter re-executes, and no model is retrained

For each it prints the seconds and how many of the book's runs were trained (parsed from the
build log's "book runs ready (N trained, ...)" line), and writes benchmarks/results/build.json
with each chapter's execution time in the cold build (from jupyter-cache's records).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from _common import ROOT, print_table, write_json

CHAPTER = ROOT / "book" / "attention.md"
CODE_LINE = "X = torch.randn(T, D)"
PLOTS = ROOT / "tinyformer" / "book" / "plots.py"
BUDGETS = {"cold (fresh clone)": 480, "runs cached": 300, "no change": 5, "one chapter's prose": 60}
LOG = Path(tempfile.gettempdir()) / "tinyformer-bench-build.log"


def build(env) -> tuple[float, int]:
    """Seconds of one strict build and the number of book runs it trained."""
    jb = Path(sys.executable).parent / "jupyter-book"
    start = time.perf_counter()
    with open(LOG, "w") as out:
        proc = subprocess.run([str(jb), "build", "book/", "-W", "--keep-going"], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the build failed (exit {proc.returncode}); its log: {LOG}")
    trained = [int(n) for n in re.findall(r"book runs ready \((\d+) trained", LOG.read_text(errors="replace"))]
    return seconds, sum(trained)


@contextmanager
def edited(path: Path, find: str, replace: str):
    """``path`` with its first ``find`` replaced, restored afterwards."""
    original = path.read_text(encoding="utf-8")
    if find not in original:
        raise SystemExit(f"{path.relative_to(ROOT)} no longer contains {find!r}, which this benchmark edits: update it")
    path.write_text(original.replace(find, replace, 1), encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")


def first_colour(path: Path) -> str:
    """The first colour literal of the figures' palette (e.g. ``"#0b66d0"``)."""
    match = re.search(r'"#[0-9a-fA-F]{6}"', path.read_text(encoding="utf-8"))
    if match is None:
        raise SystemExit(f"{path.relative_to(ROOT)} defines no colour (\"#rrggbb\") to edit")
    return match.group(0)


def prose_sentence(path: Path) -> str:
    """The first line of prose after the chapter's title, outside code cells: a sentence to edit."""
    in_code, titled = False, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif line.startswith("# "):
            titled = True
        elif titled and not in_code and line[:1].isalpha() and len(line) > 40:
            return line
    raise SystemExit(f"{path.relative_to(ROOT)} has no prose line to edit")


def chapter_seconds() -> list[dict]:
    """Each chapter's execution time in the last build, as jupyter-cache recorded it."""
    from jupyter_cache import get_cache

    caches = [p for p in (ROOT / "_build" / ".jupyter_cache").glob("tinyformer-*") if (p / "global.db").exists()]
    newest = max(caches, key=lambda p: (p / "global.db").stat().st_mtime)
    rows = [{"chapter": Path(r.uri).stem, "seconds": r.data.get("execution_seconds", float("nan"))}
            for r in get_cache(str(newest)).list_cache_records()]
    return sorted(rows, key=lambda r: -r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cold", action="store_true",
                        help="keep the run cache (TINYFORMER_CACHE or ~/.cache/tinyformer) and start from 'runs cached'")
    args = parser.parse_args()
    rows, chapters = [], []

    def record(name: str, result: tuple[float, int]) -> None:
        seconds, trained = result
        budget = BUDGETS.get(name)
        rows.append({"build": name, "seconds": seconds, "runs trained": trained, "budget s": budget,
                     "within": "" if budget is None else ("yes" if seconds <= budget else "NO")})
        print(f"{name}: {seconds:.1f} s, {trained} run(s) trained", flush=True)

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        if not args.skip_cold:
            env["TINYFORMER_CACHE"] = cache
            shutil.rmtree(ROOT / "_build", ignore_errors=True)
            record("cold (fresh clone)", build(env))
            chapters = chapter_seconds()
        shutil.rmtree(ROOT / "_build", ignore_errors=True)
        record("runs cached", build(env))
        if not chapters:
            chapters = chapter_seconds()
        record("no change", build(env))
        sentence = prose_sentence(CHAPTER)
        with edited(CHAPTER, sentence, sentence + " (edited)"):
            record("one chapter's prose", build(env))
        with edited(CHAPTER, CODE_LINE, CODE_LINE + "  # edited"):
            record("one chapter's code", build(env))
        colour = first_colour(PLOTS)
        with edited(PLOTS, colour, colour[:-2] + ("0" if colour[-2] != "0" else "f") + '"'):
            record("a figure's colour", build(env))
        build(env)  # back to the committed state, so _build/ matches the source again
    print_table(rows, ["build", "seconds", "runs trained", "budget s", "within"])
    print_table(chapters, ["chapter", "seconds"])
    write_json("build", "python benchmarks/bench_build.py", {"rows": rows, "chapters_cold": chapters})


if __name__ == "__main__":
    main()
