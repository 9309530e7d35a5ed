"""Cite this chapter: one BibTeX entry per chapter, from CITATION.cff and the chapter's title.

The build appends a "Cite this chapter" section to every chapter (see tinyformer_book.py);
the entry names the chapter, the book, the chapter's address and the book's version, so a
reading group can cite exactly what it read. Everything comes from CITATION.cff: change the
version or the address there and every entry follows.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

# BibTeX treats these as special inside a braced value; a title may use them escaped.
_ESCAPES = {"\\": None, "{": None, "}": None, "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}


def load_cff(path: Path) -> dict:
    """CITATION.cff as a dict, with the fields a chapter entry needs checked to be there."""
    cff = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    missing = [key for key in ("title", "authors", "version", "date-released", "url") if not cff.get(key)]
    if missing:
        raise ValueError(f"{path}: CITATION.cff lacks {', '.join(missing)}, which each chapter's BibTeX entry needs")
    return cff


def bibtex_escape(text: str) -> str:
    """``text`` as a BibTeX field value; braces and backslashes are refused, not guessed at."""
    out = []
    for char in text:
        if char in _ESCAPES:
            if _ESCAPES[char] is None:
                raise ValueError(f"{text!r}: a {char!r} in a title cannot go into a BibTeX entry as is; rephrase it")
            out.append(_ESCAPES[char])
        else:
            out.append(char)
    return "".join(out)


def bibtex_authors(authors: list[dict]) -> str:
    """CFF authors as BibTeX's "Family, Given and ...": an entity (a "name") is braced so that
    BibTeX does not split "The tinyformer authors" into a first and a last name."""
    names = []
    for author in authors:
        if author.get("name"):
            names.append("{" + bibtex_escape(author["name"]) + "}")
        elif author.get("family-names"):
            given = f", {bibtex_escape(author['given-names'])}" if author.get("given-names") else ""
            names.append(bibtex_escape(author["family-names"]) + given)
        else:
            raise ValueError(f"CITATION.cff author {author!r} has neither a name nor family-names")
    return " and ".join(names)


def chapter_key(cff: dict, docname: str) -> str:
    return f"tinyformer{str(cff['date-released'])[:4]}_{docname}"


def chapter_url(cff: dict, docname: str) -> str:
    return cff["url"].rstrip("/") + f"/{docname}.html"


def chapter_bibtex(cff: dict, docname: str, title: str) -> str:
    """The BibTeX entry for one chapter: the chapter in the book (@incollection), its address
    and the book's version."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", docname):
        raise ValueError(f"chapter name {docname!r} cannot be part of a BibTeX key (letters, digits, _)")
    version = bibtex_escape(str(cff["version"]))
    fields = [
        ("author", bibtex_authors(cff["authors"])),
        ("title", bibtex_escape(title)),
        ("booktitle", bibtex_escape(cff["title"])),
        ("year", str(cff["date-released"])[:4]),
        ("version", version),
        ("note", f"Version {version}"),
        ("url", chapter_url(cff, docname)),
    ]
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name.ljust(width)} = {{{value}}}" for name, value in fields)
    return f"@incollection{{{chapter_key(cff, docname)},\n{body}\n}}\n"
