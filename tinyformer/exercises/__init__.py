"""Build it yourself: starter files for every component the book teaches, and a checker
that compares your version with tinyformer's and PyTorch's and names the classic mistakes.

In a terminal::

    python -m tinyformer.exercises init my_transformer        # one starter file per chapter
    python -m tinyformer.exercises check my_transformer       # a ✓/✗ line per component
    python -m tinyformer.exercises check my_transformer --chapter attention

In a notebook::

    from tinyformer.exercises import check
    check(my_softmax, "softmax")

One folder per chapter, e.g. ``attention/``: ``starter.py`` (what ``init`` writes as
DIR/attention.py), ``solution.py`` (the reference, e.g.
:mod:`tinyformer.exercises.attention.solution`), ``checks.py`` (the seeded cases and
references the checker compares with) and ``hints.py`` (the deliberately wrong versions the
checker recognises, with their hints). Beside them: ``checker.py`` (the autograder),
``registry.py`` (the chapters' components in book order), ``component.py`` (what a
component is) and ``__main__.py`` (the command line).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .checker import DEFAULT_TIMEOUT, Report, Result, check, check_dir, diagnose, find_component
from .registry import CHAPTERS, CLASSIC, COMPONENTS, starter_file

__all__ = [
    "init", "check", "check_dir", "diagnose", "find_component", "Report", "Result", "CHAPTERS", "CLASSIC", "COMPONENTS",
    "DEFAULT_TIMEOUT",
]


def init(directory, chapters=None, *, out=None) -> list[Path]:
    """Write one starter file per chapter into ``directory`` (created if needed).

    A file that already exists is never overwritten: it is skipped with a message, since
    it may hold your work. Returns the paths written.
    """
    out = out or sys.stdout
    chapters = list(CHAPTERS) if chapters is None else list(chapters)
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter {unknown[0]!r}; the chapters are: {', '.join(CHAPTERS)}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters:
        target = directory / f"{chapter}.py"
        if target.exists():
            print(f"skipped {target}: it already exists (init never overwrites your work)", file=out)
            continue
        target.write_text(starter_file(chapter).read_text(encoding="utf-8"), encoding="utf-8")
        written.append(target)
        print(f"wrote   {target}", file=out)
    return written
