"""A fingerprint of the package's source: standard library only, so the book's Sphinx
extension can load this file without importing torch."""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def package_hash(package: Path = PACKAGE) -> str:
    """sha256 over every file of the package (relative path and bytes), caches excluded."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
