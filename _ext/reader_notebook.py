"""The reader's notebook of a chapter: what the page shows, as a notebook to run.

One generator for both launch buttons. "Launch in Binder" opens the notebook that
``binder/postBuild`` writes from the checked-out sources (``python _ext/reader_notebook.py
--target binder``); "Colab" opens the one the site's build writes after executing the chapters
(book_colab.py, ``target="colab"``). A chapter's MyST source becomes:

- an install cell first, which installs ``tinyformer`` only where it is missing (Colab); in
  Binder or a clone of the repository it does nothing;
- the cells the page shows, in order. Cells tagged ``remove-cell`` (the speaker notes, the
  claims, glue and figure descriptions) are the build's machinery and are left out; a cell
  tagged ``remove-input`` shows its output on the page, so it is kept with its code collapsed.
  Every visible cell must run without the removed ones (tests/test_binder.py runs them);
- MyST resolved to what the page says: ``{cite}`` as "Vaswani et al. (2017)" linked to the
  bibliography page, ``{doc}`` and ``other.md`` links as links to the published pages,
  ``{claim}`` as the claim's sentence (from the chapter's own ``claim(..., ref=...)`` call),
  and ``{glue:text}`` as the value the build glued when the generator is given the build's
  values (Colab), else as a link to the page that shows it (Binder: its notebook is made at
  image build, from source, without running anything);
- admonitions and dropdowns kept as MyST for Binder (jupyterlab-myst renders them) and written
  as plain Markdown for Colab (a blockquote with a bold title; a dropdown as ``<details>``); a
  tab set becomes its tabs one after the other, and raw HTML (the home page's banner) is left out.

Standard library, PyYAML and nbformat/jupytext only (all in the Binder image), so that
postBuild can run it without Sphinx.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # book_citation, book_toc (when run as a script)

import book_citation  # noqa: E402
from book_toc import BOOK, ROOT, doc_role, notebook_files, toc_files  # noqa: E402

TARGETS = ("binder", "colab")
BINDER_DIR = "notebooks"  # under the repository root, git-ignored: binder/postBuild writes it
INSTALL_TAG = "reader-install"
ADMONITIONS = {"admonition", "note", "tip", "hint", "important", "warning", "caution", "attention",
               "seealso", "danger", "error"}
GLUE_ON_PAGE = "(shown on the page)"  # a glued value in a notebook made without the build's values

_ROLE = re.compile(r"\{(?P<role>[a-z][\w:-]*)\}`(?P<body>[^`]+)`")
_COLON_OPEN = re.compile(r"^(?P<fence>:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
_TICK_OPEN = re.compile(r"^(?P<fence>`{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
_PLAIN_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?!\{)")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_TARGET = re.compile(r"^\([\w.:-]+\)=[ \t]*$")
_MD_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


class ReaderNotebookError(ValueError):
    """The chapter's source has markup the reader's notebook cannot render; names chapter and cell."""


# ---------------------------------------------------------------- the site: addresses, titles, bibliography


def site_cff(path: Path = ROOT / "CITATION.cff") -> dict:
    return book_citation.load_cff(path)


def page_url(cff: dict, docname: str) -> str:
    """The published address of a page of the book. The one place notebooks take it from
    (book_citation.chapter_url, which the "Cite this chapter" entries use too)."""
    return book_citation.chapter_url(cff, docname)


def _bib_field_value(text: str, start: int) -> tuple[str, int]:
    """A BibTeX field value starting at ``text[start]`` (braced, quoted or bare): (value, end)."""
    if text[start] == "{":
        depth, i = 0, start
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start + 1:i], i + 1
            i += 1
        raise ValueError("unbalanced braces")
    if text[start] == '"':
        end = text.index('"', start + 1)
        return text[start + 1:end], end + 1
    match = re.match(r"[\w.-]+", text[start:])
    return match.group(0), start + match.end()


def read_bibliography(path: Path) -> dict[str, dict[str, str]]:
    """``references.bib`` as {key: {field: value}} (standard library: Binder has no pybtex)."""
    text = Path(path).read_text(encoding="utf-8")
    entries = {}
    for match in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        key, i, fields = match.group(2), match.end(), {}
        while True:
            field_match = re.compile(r"\s*(\w+)\s*=\s*").match(text, i)
            if not field_match:
                break
            value, i = _bib_field_value(text, field_match.end())
            fields[field_match.group(1).lower()] = value
            comma = re.compile(r"\s*,").match(text, i)
            if not comma:
                break
            i = comma.end()
        entries[key] = fields
    return entries


def _last_names(people: str) -> list[str]:
    """"Vaswani, Ashish and Shazeer, Noam" -> ["Vaswani", "Shazeer"]; a braced name is one name."""
    names, depth, current = [], 0, ""
    for part in re.split(r"(\{|\}|\s+and\s+)", people):
        if part == "{":
            depth += 1
        elif part == "}":
            depth -= 1
        if depth == 0 and re.fullmatch(r"\s+and\s+", part or ""):
            names.append(current)
            current = ""
        else:
            current += part or ""
    names.append(current)
    last = []
    for name in (n.strip() for n in names if n.strip()):
        if name.startswith("{") and name.endswith("}"):
            last.append(name[1:-1])
        elif "," in name:
            last.append(name.split(",")[0].strip())
        else:
            last.append(name.split()[-1])
    return [re.sub(r"\\.|[{}]", "", n) for n in last]


def citation_text(entry: dict[str, str], key: str) -> tuple[str, str]:
    """(who, year) in the pages' author-year style: "Vaswani et al.", "2017"."""
    people = _last_names(entry.get("author") or entry.get("editor") or "")
    who = (people[0] if len(people) == 1 else f"{people[0]} and {people[1]}" if len(people) == 2
           else f"{people[0]} et al." if people else re.sub(r"[{}]", "", entry.get("title", key)))
    return who, entry.get("year", "n.d.")


def page_titles(book: Path = BOOK) -> dict[str, str]:
    """docname -> the page's first heading, for ``{doc}`name``` links."""
    titles = {}
    for source in sorted(Path(book).glob("*.md")):
        heading = re.search(r"^# (.+)$", source.read_text(encoding="utf-8"), re.M)
        if heading:
            titles[source.stem] = heading.group(1).strip()
    return titles


@dataclass
class Site:
    """What every chapter's notebook links to: the published pages and the bibliography."""

    cff: dict
    titles: dict
    bibliography: dict
    repository_url: str
    ref: str = "main"  # what the install cell installs: main, or an edition's tag (vX.Y.Z)

    @classmethod
    def from_repository(cls, root: Path = ROOT) -> "Site":
        cff = site_cff(Path(root) / "CITATION.cff")
        return cls(cff=cff, titles=page_titles(Path(root) / "book"),
                   bibliography=read_bibliography(Path(root) / "book" / "references.bib"),
                   repository_url=cff.get("repository-code", "").rstrip("/"))

    def url(self, docname: str) -> str:
        return page_url(self.cff, docname)


def binder_urlpath(docname: str, interface: str = "lab") -> str:
    """The JupyterLab path "Launch in Binder" opens: the chapter's reader's notebook, which
    binder/postBuild writes into BINDER_DIR (not the MyST source under book/)."""
    return f"{interface}/tree/{BINDER_DIR}/{docname}.ipynb"


# ---------------------------------------------------------------- one chapter


@dataclass
class Chapter:
    name: str
    target: str
    site: Site
    glue: dict | None = None  # name -> glued output ({"data": {"text/plain": ...}}), from the build
    claims: dict = field(default_factory=dict)  # ref -> the claim's sentence, from the chapter's code


def install_source(repository_url: str, ref: str = "main") -> str:
    """The notebook's first cell: installs tinyformer where it is missing (Colab), from the
    repository at ``ref`` (an edition's tag, vX.Y.Z, or main) with its pinned dependencies (the
    PyTorch the book is tested with), and myst-nb, whose ``glue`` a cell may call. Elsewhere it does nothing."""
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?/?", repository_url):
        raise ReaderNotebookError(f"repository url {repository_url!r} is not https://github.com/<owner>/<repo>: "
                                  f"pip installs the package from GitHub")
    return (
        "# Outside the book's repository (Colab), install tinyformer, the package this chapter builds and\n"
        "# imports, with the PyTorch version the book is tested with: a minute or two. Where it is\n"
        "# already installed (Binder, a clone of the repository) this cell does nothing.\n"
        "import importlib.util\n"
        "\n"
        'if importlib.util.find_spec("tinyformer") is None:\n'
        f'    %pip install --quiet "tinyformer @ git+{repository_url.rstrip("/")}@{ref}" "myst-nb>=1.1"'
    )


def chapter_claims(nb) -> dict[str, str]:
    """ref -> sentence of every ``claim("sentence", ..., ref="ref")`` in the chapter's code."""
    claims = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                       for line in cell.source.splitlines()))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "claim" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                ref = next((k.value for k in node.keywords if k.arg == "ref"), None)
                if isinstance(ref, ast.Constant):
                    claims[ref.value] = node.args[0].value
    return claims


def _roles(text: str, chapter: Chapter, where: str) -> str:
    site = chapter.site

    def replace(match):
        role, body = match["role"], match["body"]
        if role in ("glue:text", "glue"):
            name, _, fmt = body.partition(":") if role == "glue:text" else (body, "", "")
            if chapter.glue is None:
                return f"[{GLUE_ON_PAGE}]({site.url(chapter.name)})"
            if name not in chapter.glue:
                raise ReaderNotebookError(f"{where}: glued value {name!r} is not in this chapter's build")
            from myst_nb.core.variables import format_plain_text  # the page's own formatting (Colab: made in the build)

            return format_plain_text(chapter.glue[name]["data"]["text/plain"], fmt)
        if role == "doc":
            label, target = doc_role(body)
            if target not in site.titles:
                raise ReaderNotebookError(f"{where}: {{doc}}`{body}` names no page of the book")
            return f"[{site.titles[target] if label == target else label}]({site.url(target)})"
        if role in ("cite:p", "cite:t", "cite"):
            parts = []
            for key in (k.strip() for k in re.split(r"[,;]", body)):
                if key not in site.bibliography:
                    raise ReaderNotebookError(f"{where}: {{cite}} key {key!r} is not in references.bib")
                parts.append(citation_text(site.bibliography[key], key))
            if role == "cite:t":
                text = "; ".join(f"{who} ({year})" for who, year in parts)
            else:
                text = "(" + "; ".join(f"{who}, {year}" for who, year in parts) + ")"
            return f"[{text}]({site.url('bibliography')})"
        if role == "math":
            return f"${body}$"
        if role == "claim":
            if body not in chapter.claims:
                raise ReaderNotebookError(f"{where}: {{claim}}`{body}` cites a claim this chapter's code never makes")
            return chapter.claims[body]
        raise ReaderNotebookError(f"{where}: the MyST role {{{role}}} has no rendering in the reader's notebook")

    return _ROLE.sub(replace, text)


def _links(text: str, chapter: Chapter) -> str:
    """Links to other chapters' sources (``masks.md#anchor``) and to this page's anchors (``#x``)
    as links to the published pages."""

    def replace(match):
        target = match["target"]
        if target.startswith("#"):
            return f"]({chapter.site.url(chapter.name)}{target})"
        if m := re.fullmatch(r"([\w-]+)\.md(#[\w-]+)?", target):
            return f"]({chapter.site.url(m[1])}{m[2] or ''})"
        return match[0]

    return _MD_LINK.sub(replace, text)


def _block_end(lines: list[str], i: int, fence: str) -> int:
    """Index of the line that closes the directive opened before ``lines[i]`` by ``fence``."""
    while i < len(lines):
        if lines[i].rstrip() == fence:
            return i
        i += 1
    return -1


def _directive(name: str, arg: str, options: dict, body: list[str], chapter: Chapter, where: str,
               fence: str) -> list[str]:
    colab = chapter.target == "colab"
    if name in ADMONITIONS or name == "dropdown":
        if name == "admonition" and not arg:
            raise ReaderNotebookError(f"{where}: an {{admonition}} needs a title")
        inner = _markdown(body, chapter, where)
        if not colab:  # jupyterlab-myst renders the directive itself
            return [f"{fence}{{{name}}} {arg}".rstrip(), *(f":{k}: {v}" for k, v in options.items()), *inner, fence]
        title = arg or name.capitalize()
        if name == "dropdown":  # closed, as on the page: the answers stay hidden until asked for
            return [f"<details><summary><b>{title}</b></summary>", "", *inner, "", "</details>"]
        return [f"> **{title}**", ">", *(f"> {line}".rstrip() for line in inner)]
    if name == "tab-set":
        return _markdown(body, chapter, where)
    if name == "tab-item":
        return [f"**{arg}**", "", *_markdown(body, chapter, where), ""]
    if name in ("glue:md", "glue:any", "glue"):
        key = arg.strip()
        if chapter.glue is None:
            return [f"*[The table is {GLUE_ON_PAGE[1:-1]}]({chapter.site.url(chapter.name)}).*"]
        if key not in chapter.glue:
            raise ReaderNotebookError(f"{where}: glued value {key!r} is not in this chapter's build")
        data = chapter.glue[key]["data"]
        return data.get("text/markdown", data["text/plain"]).splitlines()
    if name == "tableofcontents":  # the home page's list of chapters, linked to the site
        return [f"- [{chapter.site.titles.get(doc, doc)}]({chapter.site.url(doc)})" for doc in toc_files()[1:]]
    if name == "raw":  # the home page's HTML banner: navigation for the site, not for a notebook
        return []
    if name == "literalinclude":  # the library's code the page quotes: the same lines, as a code block
        return [f"{fence}{options.get('language', '')}", *included_source(arg, options, where), fence]
    raise ReaderNotebookError(f"{where}: the directive {{{name}}} has no rendering in the reader's notebook")


def included_source(arg: str, options: dict, where: str) -> list[str]:
    """The lines a {literalinclude} shows: the whole file, or the one function, class or method
    its ``:pyobject:`` names (``Class.method``), as Sphinx picks it."""
    path = (BOOK / arg.strip()).resolve()
    if not path.is_file():
        raise ReaderNotebookError(f"{where}: {{literalinclude}} names {arg.strip()!r}, which is not a file")
    source = path.read_text(encoding="utf-8")
    unknown = set(options) - {"pyobject", "language"}
    if unknown:
        raise ReaderNotebookError(f"{where}: {{literalinclude}} option(s) {sorted(unknown)} have no rendering")
    if "pyobject" not in options:
        return source.rstrip("\n").splitlines()
    node, names = ast.parse(source), options["pyobject"].split(".")
    for name in names:
        found = [n for n in getattr(node, "body", []) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == name]
        if not found:
            raise ReaderNotebookError(f"{where}: {path.name} has no {options['pyobject']!r}")
        node = found[0]
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    lines = source.splitlines()[first - 1:node.end_lineno]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return [line[indent:] for line in lines]


def _markdown(lines: list[str], chapter: Chapter, where: str) -> list[str]:
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if _TARGET.match(line):  # (label)= targets are for the page's cross-references
            i += 1
            continue
        if plain := _PLAIN_FENCE.match(line):  # a code block: copied as it is
            end = _block_end(lines, i + 1, plain["fence"])
            end = len(lines) - 1 if end < 0 else end
            out += lines[i:end + 1]
            i = end + 1
            continue
        opened = _COLON_OPEN.match(line) or _TICK_OPEN.match(line)
        if not opened:
            out.append(line)
            i += 1
            continue
        fence, name, arg = opened["fence"], opened["name"], opened["arg"].strip()
        end = _block_end(lines, i + 1, fence)
        if end < 0:
            raise ReaderNotebookError(f"{where}: the directive {{{name}}} is not closed with {fence}")
        body, options, j = lines[i + 1:end], {}, 0
        while j < len(body) and (option := _OPTION.match(body[j])):
            options[option["key"]] = option["value"]
            j += 1
        if j < len(body) and body[j].strip() == "---":
            raise ReaderNotebookError(f"{where}: YAML options in {{{name}}} are not supported; use :key: value")
        out += _directive(name, arg, options, body[j:], chapter, where, fence)
        i = end + 1
    return out


def markdown_cell_source(source: str, chapter: Chapter, where: str) -> str:
    text = "\n".join(_markdown(source.splitlines(), chapter, where))
    return _links(_roles(text, chapter, where), chapter).strip()


def reader_notebook(source: Path, target: str, site: Site | None = None, glue: dict | None = None):
    """The reader's notebook of the chapter ``source`` (book/<chapter>.md) for ``target``
    ("binder" or "colab"); ``glue`` is the build's glued values (``<chapter>.glue.json``)."""
    import jupytext
    import nbformat

    if target not in TARGETS:
        raise ValueError(f"target {target!r} is not one of {', '.join(TARGETS)}")
    site = site or Site.from_repository()
    source = Path(source)
    nb = jupytext.read(source, fmt="md:myst")
    chapter = Chapter(name=source.stem, target=target, site=site, glue=glue, claims=chapter_claims(nb))
    cells = [nbformat.v4.new_code_cell(install_source(site.repository_url, site.ref), metadata={"tags": [INSTALL_TAG]})]
    for index, cell in enumerate(nb.cells):
        tags = list(cell.metadata.get("tags", []))
        where = f"{source.name}, cell {index + 1} ({cell.cell_type})"
        if "remove-cell" in tags or cell.metadata.get("slideshow", {}).get("slide_type") == "notes":
            continue  # speaker notes, claims, glue, figure descriptions: the build's, not the reader's
        if cell.cell_type == "markdown":
            text = markdown_cell_source(cell.source, chapter, where)
            if text and cells[-1].cell_type == "markdown":  # the notes or a hidden cell stood between them
                cells[-1].source += "\n\n" + text
            elif text:
                cells.append(nbformat.v4.new_markdown_cell(text))
        elif cell.cell_type == "code":
            metadata = {}
            kept = [t for t in tags if t in ("raises-exception",)]  # Run All goes on after the demonstrated error
            if kept:
                metadata["tags"] = kept
            if "remove-input" in tags:  # the page shows only the output: collapse the code
                metadata["jupyter"] = {"source_hidden": True}
                if target == "colab":
                    metadata["cellView"] = "form"
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=metadata))
        else:
            raise ReaderNotebookError(f"{where}: a {cell.cell_type} cell has no place in the reader's notebook")
    if glue is None and re.search(r"\{glue(:text)?\}`|```\{glue", source.read_text(encoding="utf-8")):
        cells.insert(1, nbformat.v4.new_markdown_cell(
            f"*This notebook is the page [{site.titles.get(chapter.name, chapter.name)}]({site.url(chapter.name)}) "
            f"to run. Some numbers the page quotes are measured by checks it keeps out of sight; here they "
            f"read {GLUE_ON_PAGE}, a link to the page.*"))
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    out.metadata["language_info"] = {"name": "python"}
    out.metadata["tinyformer"] = {"chapter": chapter.name, "page": site.url(chapter.name), "target": target}
    if target == "colab":
        out.metadata["colab"] = {"name": f"{chapter.name}.ipynb", "provenance": []}
    nbformat.validate(out)
    return out


def write_reader_notebooks(out_dir: Path, target: str, chapters: list[str] | None = None, book: Path = BOOK,
                           glue_dir: Path | None = None, site: Site | None = None) -> list[Path]:
    """``<out_dir>/<chapter>.ipynb`` for every chapter (default: every page that runs code);
    with ``glue_dir``, the values come from ``<glue_dir>/<chapter>.glue.json`` (the build's)."""
    import json

    import nbformat

    site = site or Site.from_repository()
    chapters = notebook_files() if chapters is None else chapters
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in chapters:
        glue = None
        if glue_dir is not None:
            path = Path(glue_dir) / f"{name}.glue.json"
            glue = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        nb = reader_notebook(Path(book) / f"{name}.md", target, site=site, glue=glue)
        written.append(out_dir / f"{name}.ipynb")
        nbformat.write(nb, written[-1])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write each chapter's reader's notebook (what the page shows).")
    parser.add_argument("--target", choices=TARGETS, default="binder")
    parser.add_argument("--out", type=Path, default=ROOT / BINDER_DIR, help=f"folder (default: {BINDER_DIR}/)")
    parser.add_argument("chapters", nargs="*", help="chapter names (default: every page that runs code)")
    args = parser.parse_args(argv)
    paths = write_reader_notebooks(args.out, args.target, args.chapters or None)
    print(f"{len(paths)} reader's notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
