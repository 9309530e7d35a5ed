"""What a chapter needs around its code, wherever it runs: in the book build or in a notebook.

A chapter runs in two places: in ``jupyter-book build`` (the book's Sphinx extension sets
``TINYFORMER_BOOK_BUILD=1`` for the kernels it starts) and in a reader's JupyterLab (Binder,
or a local clone). Three things differ:

- numbers quoted in prose are *glued*: the book substitutes them into the text, a notebook
  cannot, so outside the build :func:`glue` also prints each value under its name;
- the trained model is cached by the build; a reader's fresh kernel may have to train it,
  so :func:`book_run` shows a progress bar there and says how long it takes;
- claims and figure descriptions (:mod:`tinyformer.book.claims`) are recorded for the
  build's ``claims.json`` only inside the build, and checked everywhere.
"""

from __future__ import annotations

import os
import sys

__all__ = ["in_book_build", "chapter_name", "glue", "book_run"]

BUILD_ENV = "TINYFORMER_BOOK_BUILD"
CHAPTER_ENV = "TINYFORMER_CHAPTER"


def in_book_build() -> bool:
    """True inside ``jupyter-book build`` (set by _ext/tinyformer_book.py), False in a notebook."""
    return os.environ.get(BUILD_ENV) == "1"


def chapter_name() -> str | None:
    """The chapter being executed by the build (its file name without ``.md``), else None."""
    return os.environ.get(CHAPTER_ENV) or None


def glue(name: str, value):
    """Glue ``value`` for ``{glue:text}`name``` in the prose, and return it.

    In the book the value appears in the sentence. In JupyterLab the role shows only its name,
    so there the value is also printed here, under that name, right after the cell that made it.
    """
    from myst_nb import glue as myst_glue

    myst_glue(name, value, display=False)
    if not in_book_build():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"[quoted in the text] {name} = {shown}")
    return value


def book_run():
    """The book's trained model (``BOOK_RUN``): loaded from the cache, or trained on first use.

    The build trains it once and caches it; a reader's fresh kernel (Binder, Colab, a new clone)
    trains it here with a progress bar: about a minute on 2 CPU cores.
    """
    from ..train import BOOK_RUN, load_or_train

    if in_book_build():
        return load_or_train(BOOK_RUN, progress=False)
    print(f"Loading the book's trained model, or training it on first use "
          f"({BOOK_RUN.max_steps} steps: about a minute on 2 CPU cores) ...", file=sys.stderr, flush=True)
    return load_or_train(BOOK_RUN, progress=True)
