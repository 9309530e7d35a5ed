"""Claims: sentences of the book that its own computation checks, like an ``assert`` with prose.

A chapter states what it will say about a result, with the values that support it::

    claim("RMSNorm keeps the sign of every element", bool((x.sign() == y.sign()).all()),
          input_mean=x.mean(), output_mean=y.mean())

If the statement does not hold, the cell raises :class:`ClaimFailed` with the sentence and the
measured values, so the strict build fails exactly as it does for a raising cell: a false
sentence cannot be published. Figures get their alt text and caption the same way, written from
the data that drew them (:func:`describe_figure`).

Inside ``jupyter-book build`` every claim and figure description is also appended to a file per
chapter (in ``$TINYFORMER_CLAIMS_DIR``, set by the book's Sphinx extension), which the extension
turns into ``_build/html/claims.json`` and uses to write the figures' alt text and captions.
In a reader's notebook the checks run the same way and print a check mark.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from .build_env import chapter_name, in_book_build

__all__ = ["ClaimFailed", "claim", "describe_figure", "CLAIMS_DIR_ENV"]

CLAIMS_DIR_ENV = "TINYFORMER_CLAIMS_DIR"
_started: set[str] = set()  # chapters whose claim file this kernel has already truncated


class ClaimFailed(AssertionError):
    """A sentence of the book that its own executed output does not support."""


def _plain(value):
    """A JSON-friendly copy of a measured value (tensors and numpy scalars become numbers)."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy array or scalar
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return str(value)


def _truth(held) -> bool:
    if hasattr(held, "numel"):  # a tensor: every element must be true
        return bool(held.all())
    if hasattr(held, "all") and not isinstance(held, (bool, int)):  # numpy
        return bool(held.all())
    if not isinstance(held, (bool, int)) and type(held).__name__ != "bool_":
        raise TypeError(f"a claim's truth must be a bool or a boolean tensor, got {type(held).__name__}")
    return bool(held)


def _record(entry: dict) -> None:
    folder, chapter = os.environ.get(CLAIMS_DIR_ENV), chapter_name()
    if not (in_book_build() and folder and chapter):
        return
    path = Path(folder) / f"{chapter}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if chapter in _started else "w"  # a re-executed chapter starts its file afresh
    _started.add(chapter)
    with path.open(mode, encoding="utf-8") as f:
        f.write(json.dumps({"chapter": chapter, **entry}, ensure_ascii=False) + "\n")


def _format_values(values: dict) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else repr(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items()) or "(no values given)"


def claim(text: str, held, *, ref: str | None = None, **values) -> bool:
    """Check a statement the chapter makes about its own results; raise if it does not hold.

    ``text`` is the sentence (or the part of it that depends on the result), ``held`` whether
    the computation supports it, and ``values`` the measured numbers a reader would check.

    ``ref`` names the claim so that a speaker note (or a page sentence) can state it with the
    role ``{claim}`ref```: the build writes the claim's text there, and refuses a note that cites a
    claim the chapter's code never made. A note can then only say what the code checked.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a claim needs the sentence it checks, as a non-empty string")
    if ref is not None and not (isinstance(ref, str) and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", ref)):
        raise ValueError(f"a claim's ref is a lower-case name (letters, digits, - and _), got {ref!r}")
    ok = _truth(held)
    plain = {k: _plain(v) for k, v in values.items()}
    _record({"kind": "claim", "text": text, "values": plain, "held": ok, **({"ref": ref} if ref else {})})
    if not ok:
        raise ClaimFailed(f"the book says {text!r}, but its own output does not support it: {_format_values(plain)}")
    if not in_book_build():
        print(f"✓ {text}")
    return True


def describe_figure(name: str, alt: str, caption: str | None = None) -> None:
    """Give the figure ``name`` (its ``mystnb.figure.name``) alt text and a caption made from data.

    The book's extension writes them into the page, replacing what the cell's metadata says,
    so a description can never drift from the picture it describes.
    """
    for what, text in (("name", name), ("alt text", alt)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"describe_figure needs a non-empty {what}")
    if caption is not None and (not isinstance(caption, str) or not caption.strip()):
        raise ValueError("a figure caption, when given, must be a non-empty string")
    _record({"kind": "figure", "name": name, "alt": alt, "caption": caption})
