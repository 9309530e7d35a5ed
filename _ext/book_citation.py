"""Cite this chapter: one BibTeX entry per chapter, from CITATION.cff and the chapter's title.

The build appends a "Cite this chapter" section to every chapter (see tinyformer_book.py);
the entry names the chapter, the book, the edition's number and date, and the chapter's
stable address in that edition (``<url>/<version>/<chapter>.html``, which `python3 tasks.py
release` publishes and never changes afterwards), so a reading group can cite exactly what it
read. The version is written once, in the top-level VERSION file; CITATION.cff holds the title,
authors, address and release date, and its ``version`` must agree with VERSION (release writes
both; a hand edit that makes them differ fails the build).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

# BibTeX treats these as special inside a braced value; a title may use them escaped.
_ESCAPES = {"\\": None, "{": None, "}": None, "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}


def read_version(path: Path) -> str:
    """The book's version from the VERSION file (one line, X.Y.Z)."""
    version = Path(path).read_text(encoding="utf-8").strip()
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ValueError(f"{path}: {version!r} is not a version X.Y.Z")
    return version


def load_cff(path: Path, version_file: Path | None = None) -> dict:
    """CITATION.cff as a dict, with the fields a chapter entry needs checked to be there. With
    ``version_file`` (VERSION, the one place the version is written), CITATION.cff's version must
    be the same."""
    cff = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    missing = [key for key in ("title", "authors", "version", "date-released", "url") if not cff.get(key)]
    if missing:
        raise ValueError(f"{path}: CITATION.cff lacks {', '.join(missing)}, which each chapter's BibTeX entry needs")
    if version_file is not None:
        version = read_version(version_file)
        if str(cff["version"]) != version:
            raise ValueError(f"{path} says version {cff['version']} but {version_file} says {version}: "
                             f"`python3 tasks.py release X.Y.Z` writes both; make them agree")
    return cff


def edition_url(cff: dict) -> str:
    """The stable address of this edition: ``<url>/<version>/`` (release publishes it there)."""
    return cff["url"].rstrip("/") + f"/{cff['version']}/"


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
    """The chapter in this edition: an address that keeps serving the text that was cited."""
    return edition_url(cff) + f"{docname}.html"


def book_bibtex(cff: dict) -> str:
    """The BibTeX entry for the whole book in this edition (the "How to cite" page)."""
    version = bibtex_escape(str(cff["version"]))
    fields = [
        ("title", bibtex_escape(cff["title"])),
        ("author", bibtex_authors(cff["authors"])),
        ("year", str(cff["date-released"])[:4]),
        ("date", str(cff["date-released"])),
        ("version", version),
        ("edition", version),
        ("howpublished", "Jupyter Book"),
        ("url", edition_url(cff)),
    ]
    if cff.get("doi"):
        fields.append(("doi", bibtex_escape(str(cff["doi"]))))
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name.ljust(width)} = {{{value}}}" for name, value in fields)
    return f"@misc{{tinyformer{str(cff['date-released'])[:4]},\n{body}\n}}\n"


def chapter_bibtex(cff: dict, docname: str, title: str) -> str:
    """The BibTeX entry for one chapter: the chapter in the book (@incollection), its address
    in this edition, and the edition's version and date."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", docname):
        raise ValueError(f"chapter name {docname!r} cannot be part of a BibTeX key (letters, digits, _)")
    version = bibtex_escape(str(cff["version"]))
    fields = [
        ("author", bibtex_authors(cff["authors"])),
        ("title", bibtex_escape(title)),
        ("booktitle", bibtex_escape(cff["title"])),
        ("year", str(cff["date-released"])[:4]),
        ("date", str(cff["date-released"])),
        ("version", version),
        ("note", f"Version {version}"),
        ("url", chapter_url(cff, docname)),
    ]
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name.ljust(width)} = {{{value}}}" for name, value in fields)
    return f"@incollection{{{chapter_key(cff, docname)},\n{body}\n}}\n"
