"""Writing files so that a crash never leaves half of one, and fingerprinting them.

The one atomic writer and the one hasher of the package: checkpoints, run folders, cached
downloads and the playground export all write through :func:`atomic_write_bytes`, and every
sha256 of a file, of bytes or of a folder is computed here.

Standard library only (no torch, no numpy): the book's Sphinx extension loads this file by path
to compute :func:`package_hash` without importing the package.

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temp_files",
    "sha256_bytes",
    "sha256_file",
    "package_hash",
    "library_hash",
    "PACKAGE",
    "NOT_LIBRARY",
]

PACKAGE = Path(__file__).resolve().parent

# Subpackages that show or exercise the model but never change what training computes, and the
# run configurations (data: a cached run is keyed on its own config's content).
NOT_LIBRARY = ("book", "exercises", "configs")


# ------------------------------------------------------------------ atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old file or the new
    one, never half of one: a temporary file in the same folder, fsync, then a rename.

    The file gets the mode an ordinary ``open(path, "w")`` would give (0666 minus the
    umask), not mkstemp's private 0600. A leftover ``.<name>.*.tmp`` from a killed writer
    is removed by :func:`remove_stale_temp_files`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded (UTF-8 unless told otherwise)."""
    atomic_write_bytes(path, text.encode(encoding))


def remove_stale_temp_files(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete temporary files that :func:`atomic_write_bytes` left for ``names`` in ``folder``
    (a writer killed mid-write cannot clean up). Returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for name in names:
            for tmp in folder.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


# ------------------------------------------------------------------ fingerprints
def sha256_bytes(data: bytes) -> str:
    """The sha256 of ``data``, as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_hash(package: Path = PACKAGE, exclude: tuple[str, ...] = ()) -> str:
    """16 hex digits of a sha256 over every file of a folder (relative path and bytes), caches
    and the top-level folders named in ``exclude`` left out. By default, the whole package."""
    package = Path(package)
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.relative_to(package).parts[0] not in exclude):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def library_hash(package: Path = PACKAGE) -> str:
    """The fingerprint of what a trained model depends on: the library, not the book's kit or
    the exercises (:data:`NOT_LIBRARY`), so editing those never retrains a model."""
    return package_hash(package, exclude=NOT_LIBRARY)
