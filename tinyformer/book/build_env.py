"""Where a chapter is running: inside ``jupyter-book build`` or in a reader's notebook.

The book's Sphinx extension (_ext/tinyformer_book.py) sets ``TINYFORMER_BOOK_BUILD=1`` and the
chapter's name for the kernels it starts; :mod:`tinyformer.book.page` and
:mod:`tinyformer.book.claims` both ask here, so neither needs the other for it.
"""

from __future__ import annotations

import os

__all__ = ["BUILD_ENV", "CHAPTER_ENV", "in_book_build", "chapter_name"]

BUILD_ENV = "TINYFORMER_BOOK_BUILD"
CHAPTER_ENV = "TINYFORMER_CHAPTER"


def in_book_build() -> bool:
    """True inside ``jupyter-book build`` (set by _ext/tinyformer_book.py), False in a notebook."""
    return os.environ.get(BUILD_ENV) == "1"


def chapter_name() -> str | None:
    """The chapter being executed by the build (its file name without ``.md``), else None."""
    return os.environ.get(CHAPTER_ENV) or None
