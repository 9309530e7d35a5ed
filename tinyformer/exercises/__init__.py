"""Build it yourself: starter files for every component the book teaches, and a checker
that compares your version with tinyformer's and PyTorch's and says what kind of mistake yours made.

In a terminal::

    python -m tinyformer.exercises init my_transformer        # one starter file per chapter
    python -m tinyformer.exercises check my_transformer       # a ✓/✗ line per component
    python -m tinyformer.exercises check my_transformer --chapter attention

In a notebook::

    from tinyformer.exercises import check
    check(my_softmax, "softmax")

``check`` imports and runs your files with your own rights, like any script you run: it
isolates them in a child process with a time limit so a bug costs one line of the report, but
it is not a sandbox (code in those files can read, write and delete what you can). Check only
code you trust.

One folder per chapter, e.g. ``attention/``: ``starter.py`` (what ``init`` writes as
DIR/attention.py), ``solution.py`` (the reference, e.g.
:mod:`tinyformer.exercises.attention.solution`), ``checks.py`` (the seeded cases and
references the checker compares with) and ``hints.py`` (the deliberately wrong versions the
checker recognises, with their hints). Beside them: ``checker.py`` (the autograder),
``probes.py`` (the probes that name the kind of a mistake from properties: a factor such as
√d_head, an ignored argument, a broken invariant; each chapter's checks.py declares its own),
``mutations.py`` (the mutation suite that measures them), ``registry.py`` (the chapters'
components in book order), ``component.py`` (what a component is) and ``__main__.py`` (the
command line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .checker import DEFAULT_TIMEOUT, MAX_TIMEOUT, Report, Result, check, check_dir, diagnose, find_component, validate_timeout
from .registry import CHAPTERS, CLASSIC, COMPONENTS, starter_file

__all__ = [
    "init", "check", "check_dir", "diagnose", "find_component", "Report", "Result", "CHAPTERS", "CLASSIC", "COMPONENTS",
    "DEFAULT_TIMEOUT", "MAX_TIMEOUT", "validate_timeout",
]


def init(directory, chapters=None, *, out=None) -> list[Path]:
    """Write one starter file per chapter into ``directory`` (created if needed).

    A file that already exists is never overwritten: it is skipped with a message, since
    it may hold your work. A symbolic link where a starter goes (even one pointing nowhere) is
    refused before anything is written: writing through it would write outside ``directory``.
    Returns the paths written.
    """
    out = out or sys.stdout
    chapters = list(CHAPTERS) if chapters is None else list(chapters)
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter {unknown[0]!r}; the chapters are: {', '.join(CHAPTERS)}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    links = [directory / f"{c}.py" for c in chapters if (directory / f"{c}.py").is_symlink()]
    if links:
        raise FileExistsError(f"{links[0]} is a symbolic link (to {os.readlink(links[0])}): init never writes through "
                              f"a link, which could write outside {directory}; remove it, or init another folder")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters:
        target = directory / f"{chapter}.py"
        text = starter_file(chapter).read_text(encoding="utf-8")
        try:
            # "x": create, never open an existing file; with O_EXCL the kernel also refuses a
            # symbolic link made since the check above, dangling or not.
            with open(target, "x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            if target.is_symlink():
                raise FileExistsError(f"{target} is a symbolic link: init never writes through a link") from None
            print(f"skipped {target}: it already exists (init never overwrites your work)", file=out)
            continue
        written.append(target)
        print(f"wrote   {target}", file=out)
    return written
