"""The book's table of contents, read in one place: the build's extension (which pages are
chapters), the PDF (which pages to print, in order) and the tests (which pages to check).

_toc.yml at the top level is the only copy; book/_toc.yml is a symbolic link to it, because
`jupyter-book build book/` looks for the TOC only inside book/. Needs only PyYAML.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOC = ROOT / "_toc.yml"
BOOK = ROOT / "book"


def _read(toc: Path) -> dict:
    return yaml.safe_load(Path(toc).read_text(encoding="utf-8"))


def toc_files(toc: Path = TOC) -> list[str]:
    """Every document named in the TOC, root first, in reading order."""
    data = _read(toc)
    files = [data["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in data.get("parts", []):
        walk(part.get("chapters"))
    walk(data.get("chapters"))
    return files


def is_notebook(source: Path) -> bool:
    """A MyST-NB text notebook (it runs code when built), not a plain Markdown page."""
    return Path(source).read_text(encoding="utf-8").startswith("---\njupytext:")


def notebook_files(toc: Path = TOC, book: Path = BOOK) -> list[str]:
    """The TOC's documents that run code, root included, in reading order."""
    return [f for f in toc_files(toc) if is_notebook(Path(book) / f"{f}.md")]


def chapter_names(toc: Path = TOC, book: Path = BOOK) -> list[str]:
    """The book's chapters in reading order: every TOC entry that runs code, except the root
    page. Each gets a BibTeX entry, a slide deck and a Colab notebook."""
    root = _read(toc)["root"]
    return [f for f in notebook_files(toc, book) if f != root]


def doc_role(body: str) -> tuple[str, str]:
    """(label, page) of a MyST {doc} role's body, "page" or "label <page>" (a leading / dropped from
    the page); without a label the label is the body, and callers show the page's title then."""
    label, target = body, body
    if m := re.fullmatch(r"(.*?)\s*<([^>]+)>", body):
        label, target = m[1], m[2]
    return label, target.lstrip("/")
