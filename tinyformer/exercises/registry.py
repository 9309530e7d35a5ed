"""Every chapter's components, in the book's reading order: what ``init`` writes and
``check`` runs. Each chapter's folder holds its own (checks.py, hints.py, starter.py);
this module only collects them."""

from __future__ import annotations

import importlib
from pathlib import Path

from .component import Component

# The book's chapters that have exercises, in reading order: the names of their folders here
# and of the starter files `init` writes (DIR/<chapter>.py).
CHAPTERS = (
    "tokens", "positions", "attention", "masks", "multihead", "normalization", "language_model", "training", "sampling",
)


def _chapter_module(chapter: str, part: str):
    return importlib.import_module(f"{__package__}.{chapter}.{part}")


def starter_file(chapter: str) -> Path:
    """The starter ``init`` copies for ``chapter`` (package data: read as text, not imported)."""
    return Path(__file__).parent / chapter / "starter.py"


COMPONENTS: list[Component] = [c for chapter in CHAPTERS for c in _chapter_module(chapter, "checks").COMPONENTS]

BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}

# One classic mistake per chapter, for the book's hidden cell:
#     name, wrong = CLASSIC[chapter];  check(wrong, name)
CLASSIC: dict[str, tuple] = {chapter: _chapter_module(chapter, "hints").CLASSIC for chapter in CHAPTERS}
