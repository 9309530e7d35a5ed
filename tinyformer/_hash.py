"""A fingerprint of the package's source: standard library only, so the book's Sphinx
extension can load this file without importing torch."""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


# Subpackages that show or exercise the model but never change what training computes.
NOT_LIBRARY = ("book", "exercises")


def package_hash(package: Path = PACKAGE, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over every file of the package (relative path and bytes), caches and the
    top-level folders named in ``exclude`` left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.relative_to(package).parts[0] not in exclude):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def library_hash() -> str:
    """The fingerprint of what a trained model depends on: the library, not the book's machinery."""
    return package_hash(exclude=NOT_LIBRARY)
