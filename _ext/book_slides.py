"""Slide decks for the reading group, made from the chapters by the book's own build.

The author marks slides in the chapter's MyST source with the Jupyter slideshow cell metadata
(the convention of Jupyter's "Slide Type" and nbconvert's slides exporter):

- a Markdown cell that starts a slide: a ``+++ {"slideshow": {"slide_type": "slide"}}`` block
  break before it (a block break does not change the page);
- a code cell whose output (a figure, a printed check) goes on a slide: ``slideshow:
  {slide_type: slide}`` (a new slide) or ``fragment`` (revealed on the current one) in its
  options; its code is shown only when it is also tagged ``slide-input``;
- speaker notes beside the slide they belong to: a Markdown cell after it with
  ``+++ {"slideshow": {"slide_type": "notes"}, "tags": ["remove-cell"]}`` (the tag keeps the
  notes off the page);
- every cell without slideshow metadata stays out of the deck.

After the build, nbconvert's ``SlidesExporter`` turns the notebook that MyST-NB executed for
the page (``_build/jupyter_execute/<chapter>.ipynb``: same run, same outputs, same figures) into
``_build/html/slides/<chapter>.slides.html``, with the vendored reveal.js and MathJax, the
template in assets/slides/ and the site's palette (assets/css/slides.css). nbconvert renders
CommonMark, so the MyST the chapters use in slide cells is resolved first, from the same build:
glued numbers (the page's ``<chapter>.glue.json``), ``{doc}`` links, ``{cite}`` references,
admonitions; anything else is an error, never raw MyST on a slide.
"""

from __future__ import annotations

import html
import json
import re
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

from nbconvert.preprocessors import Preprocessor

from book_toc import doc_role

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "assets" / "slides"
TEMPLATE = "tinyformer_reveal"
SLIDES_DIR = "slides"  # under _build/html
STATIC = "../_static"  # from _build/html/slides/ to Sphinx's static folder
WIDTH, HEIGHT = 1280, 720  # 16:9
MIN_SLIDES, MAX_SLIDES = 8, 20
ADMONITIONS = {"admonition", "note", "tip", "hint", "important", "warning", "caution", "attention", "seealso"}

_ROLE = re.compile(r"\{(?P<role>[a-z][\w:-]*)\}`(?P<body>[^`]+)`")
_FENCE_OPEN = re.compile(r"^(?P<colons>:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<arg>.*)$")
_TARGET = re.compile(r"^\([\w.:-]+\)=[ \t]*$")
_MD_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


class SlideSourceError(ValueError):
    """A chapter's slide markup cannot be turned into a deck; the message names the chapter and cell."""


@dataclass
class Chapter:
    """What the deck of one chapter is made from, all of it from the same build."""

    name: str
    title: str
    glue: dict = field(default_factory=dict)  # name -> glued output (from <chapter>.glue.json)
    figures: dict = field(default_factory=dict)  # figure name -> {"alt", "caption"} (describe_figure)
    titles: dict = field(default_factory=dict)  # docname -> title, for {doc} links
    cite: object = None  # callable(keys, textual) -> str
    claims: dict = field(default_factory=dict)  # claim ref -> its record (claim(..., ref=...)), for {claim} roles


def slide_type(cell) -> str | None:
    return cell.metadata.get("slideshow", {}).get("slide_type")


# ---------------------------------------------------------------- MyST -> CommonMark


def _roles(text: str, chapter: Chapter, where: str) -> str:
    from myst_nb.core.variables import format_plain_text

    def replace(match):
        role, body = match["role"], match["body"]
        if role in ("glue:text", "glue"):
            name, _, fmt = body.rpartition(":") if role == "glue:text" and ":" in body else (body, "", "")
            if name not in chapter.glue:
                raise SlideSourceError(f"{where}: glued value {name!r} is not in this chapter's build")
            return format_plain_text(chapter.glue[name]["data"]["text/plain"], fmt)
        if role == "doc":
            label, target = doc_role(body)
            if target not in chapter.titles:
                raise SlideSourceError(f"{where}: {{doc}}`{body}` names no page of the book")
            return f"[{chapter.titles[target] if label == target else label}](../{target}.html)"
        if role in ("cite:p", "cite:t"):
            return chapter.cite([k.strip() for k in body.split(",")], textual=role == "cite:t")
        if role == "math":
            return f"${body}$"
        if role == "claim":
            record = chapter.claims.get(body)
            if record is None:
                raise SlideSourceError(f"{where}: {{claim}}`{body}` cites a claim this chapter's code never made "
                                       f"(claim(..., ref={body!r}))")
            if not record.get("held"):
                raise SlideSourceError(f"{where}: {{claim}}`{body}` cites a claim its output refutes: {record['text']!r}")
            return record["text"]
        raise SlideSourceError(f"{where}: the MyST role {{{role}}} is not supported on slides")

    return _ROLE.sub(replace, text)


def _links(text: str, chapter: Chapter) -> str:
    """MyST links to chapters (``other.md``, ``#anchor``) as links to the built pages."""

    def replace(match):
        target = match["target"]
        if target.startswith("#"):
            return f"](../{chapter.name}.html{target})"
        if re.fullmatch(r"[\w-]+\.md(#[\w-]+)?", target):
            page, _, anchor = target.partition("#")
            return f"](../{page[:-3]}.html{'#' + anchor if anchor else ''})"
        return match[0]

    return _MD_LINK.sub(replace, text)


def myst_to_markdown(source: str, chapter: Chapter, where: str) -> str:
    """The MyST of a slide cell as CommonMark (with inline HTML for admonitions), values from the build."""
    lines, out, i = source.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if _TARGET.match(line):  # (label)= targets are for the page's cross-references
            i += 1
            continue
        opened = _FENCE_OPEN.match(line)
        if include := re.match(r"^(`{3,})\{literalinclude\}\s+(\S+)\s*$", line):
            # The library's code the page quotes: the same lines, as a code block (the reader's
            # notebook's reading of the directive, so the deck, the notebook and the page agree).
            import reader_notebook

            fence, options, i = include[1], {}, i + 1
            while i < len(lines) and (option := re.match(r"^:(\w[\w-]*):\s*(.*)$", lines[i])):
                options[option[1]] = option[2].strip()
                i += 1
            if i == len(lines) or lines[i].rstrip() != fence:
                raise SlideSourceError(f"{where}: the {{literalinclude}} of {include[2]} is not closed with {fence}")
            try:
                code = reader_notebook.included_source(include[2], options, where)
            except reader_notebook.ReaderNotebookError as error:
                raise SlideSourceError(str(error)) from None
            out += [f"{fence}{options.get('language', '')}", *code, fence]
            i += 1
            continue
        if line.lstrip().startswith("```{") or (line.startswith(":::") and not opened):
            raise SlideSourceError(f"{where}: the directive {line.strip()!r} is not supported on slides")
        if not opened:
            out.append(line)
            i += 1
            continue
        name, colons = opened["name"], opened["colons"]
        if name not in ADMONITIONS:
            raise SlideSourceError(f"{where}: the directive {{{name}}} is not supported on slides "
                                   f"(admonitions are: {', '.join(sorted(ADMONITIONS))})")
        title = opened["arg"].strip() or name.capitalize()
        if name == "admonition" and not opened["arg"].strip():
            raise SlideSourceError(f"{where}: an {{admonition}} needs a title")
        classes, i = [name] if name != "admonition" else [], i + 1
        while i < len(lines) and (option := re.match(r"^:(\w[\w-]*):\s*(.*)$", lines[i])):
            if option[1] != "class":
                raise SlideSourceError(f"{where}: the admonition option :{option[1]}: is not supported on slides")
            classes += option[2].split()
            i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != colons:
            if _FENCE_OPEN.match(lines[i]):
                raise SlideSourceError(f"{where}: directives nested in an admonition are not supported on slides")
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise SlideSourceError(f"{where}: the admonition {title!r} is not closed with {colons}")
        i += 1
        out += [f'<div class="admonition {" ".join(classes)}">',
                f'<p class="admonition-title">{html.escape(_roles(title, chapter, where), quote=False)}</p>', "",
                *body, "", "</div>"]
    return _links(_roles("\n".join(out), chapter, where), chapter)


# A measured number written out in a note: a decimal, a percentage, a power of ten or a ratio
# ("0.51", "11.3%", "1e-5", "2.3x"). Small counts ("four tokens", "T = 4") stay prose.
_LITERAL_NUMBER = re.compile(r"(?<![\w.])(\d+(\.\d+)?\s*%|\d+(\.\d+)?e[-+]?\d+|\d+(\.\d+)?\s*[×x](?!\w)|\d+\.\d+)")


def check_note_numbers(source: str, where: str) -> None:
    """Speaker notes meet the page's standard: a measured number comes from the executed cells,
    through {glue:text}, and a result is stated with {claim}; neither can be typed in by hand."""
    text = re.sub(r"\$[^$]*\$", "", _ROLE.sub("", source))  # roles and math are not literals
    if found := _LITERAL_NUMBER.search(text):
        raise SlideSourceError(f"{where}: speaker notes write the number {found.group(0)!r} by hand: glue it "
                               f"({{glue:text}}`name`) so that it comes from the executed cells")


# ---------------------------------------------------------------- the preprocessor


class BookSlidesPreprocessor(Preprocessor):
    """Prepares an executed chapter for nbconvert's reveal.js exporter.

    Unmarked cells are skipped (a slide holds what its author marked, nothing that follows it
    by accident); slide and notes cells have their MyST resolved; code cells show their
    outputs, and their code only when tagged ``slide-input``; figures carry the alt text and
    caption that the chapter's code wrote for the page.
    """

    def __init__(self, chapter: Chapter, **kw):
        super().__init__(**kw)
        self.chapter = chapter

    def preprocess(self, nb, resources):
        nb = deepcopy(nb)
        for index, cell in enumerate(nb.cells):
            kind = slide_type(cell)
            where = f"{self.chapter.name}.md, cell {index + 1} ({cell.cell_type}, slide_type {kind})"
            if kind is None:
                cell.metadata.setdefault("slideshow", {})["slide_type"] = "skip"
                continue
            if kind not in ("slide", "subslide", "fragment", "notes", "skip", "-"):
                raise SlideSourceError(f"{where}: unknown slide_type {kind!r}")
            tags = cell.metadata.get("tags", [])
            if kind == "notes" and (cell.cell_type != "markdown" or "remove-cell" not in tags):
                raise SlideSourceError(f"{where}: speaker notes must be a Markdown cell tagged remove-cell, "
                                       f"so that they stay off the page")
            if kind == "notes" and re.search(r"^#+ |^```|^:::", cell.source, re.M):
                raise SlideSourceError(f"{where}: speaker notes hold a heading, a directive or a code block: "
                                       f"is the '+++' that ends the notes missing (the page's text would be hidden)?")
            if kind == "notes":
                check_note_numbers(cell.source, where)
            if cell.cell_type == "markdown":
                cell.source = myst_to_markdown(cell.source, self.chapter, where)
            elif cell.cell_type == "code" and kind != "skip":
                self._code(cell, where, tags)
        return nb, resources

    def _code(self, cell, where, tags):
        if "slide-input" not in tags:
            cell.metadata["transient"] = {"remove_source": True}
        glued = "application/papermill.record/"  # glue(): the page's numbers, not something to show
        shown = [o for o in cell.outputs if not any(k.startswith(glued) for k in o.get("data", {}))
                 and (o.output_type != "display_data" or set(o.get("data", {})) - {"text/plain"})]
        if not shown and "slide-input" not in tags:
            raise SlideSourceError(f"{where}: a code cell on a slide shows only its output, and it has none")
        cell.outputs = shown
        mystnb = cell.metadata.get("mystnb", {})
        if any("image/png" in o.get("data", {}) for o in shown):
            name = mystnb.get("figure", {}).get("name")
            described = self.chapter.figures.get(name, {})
            alt = described.get("alt") or mystnb.get("image", {}).get("alt")
            if not alt:
                raise SlideSourceError(f"{where}: a figure on a slide needs alt text (mystnb image alt or describe_figure)")
            caption = described.get("caption") or mystnb.get("figure", {}).get("caption", "")
            cell.metadata["tinyformer_figure"] = {"alt": alt, "caption": caption}


# ---------------------------------------------------------------- decks


@dataclass
class Deck:
    chapter: str
    path: Path
    slides: int
    notes: int
    figures: int


def check_structure(nb, chapter: str) -> tuple[int, int]:
    """The reading group's shape of a deck: 8 to 20 slides, notes beside every slide, the
    objectives first and the discussion questions last. Returns (slides, notes)."""
    starts = [i for i, c in enumerate(nb.cells) if slide_type(c) in ("slide", "subslide")]
    problems = []
    if not starts:
        raise SlideSourceError(f"{chapter}.md marks no slides")
    first, last = nb.cells[starts[0]], nb.cells[starts[-1]]
    if first.cell_type != "markdown" or ":class: objectives" not in first.source:
        problems.append("the first slide must be the chapter's objectives (its 'Learning objectives' admonition)")
    if last.cell_type != "markdown" or not re.match(r"#+ Discussion questions", last.source.strip()):
        problems.append("the last slide must be the chapter's 'Discussion questions'")
    if not MIN_SLIDES <= len(starts) <= MAX_SLIDES:
        problems.append(f"{len(starts)} slides, where a deck has {MIN_SLIDES} to {MAX_SLIDES}")
    notes = 0
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(nb.cells)
        n = sum(slide_type(c) == "notes" for c in nb.cells[start:end])
        notes += n
        if not n:
            heading = nb.cells[start].source.strip().splitlines()[0] if nb.cells[start].source.strip() else "?"
            problems.append(f"slide {k + 1} ({heading[:50]!r}) has no speaker notes")
    if problems:
        raise SlideSourceError(f"{chapter}.md: " + "; ".join(problems))
    return len(starts), notes


def make_exporter():
    from nbconvert import SlidesExporter

    return SlidesExporter(
        extra_template_basedirs=[str(TEMPLATES)],
        template_name=TEMPLATE,
        reveal_url_prefix=f"{STATIC}/reveal.js",
        reveal_width=str(WIDTH),
        reveal_height=str(HEIGHT),
        reveal_transition="none",
        reveal_number="c/t",
        mathjax_url=f"{STATIC}/mathjax/tex-chtml.js",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def executed_notebook(path: Path, cache_path: str | None):
    """The notebook MyST-NB wrote for the page, with the outputs the page shows.

    MyST-NB (1.4) writes ``jupyter_execute/<chapter>.ipynb`` from the notebook as it was read, so
    a page whose outputs came from the execution cache gets a copy without outputs. The outputs
    are taken from the same cache record the page was rendered from (jupyter-cache matches on the
    code and its metadata), so deck and page show the same run."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if cache_path and Path(cache_path).is_dir():
        from jupyter_cache import get_cache

        try:
            _, nb = get_cache(cache_path).merge_match_into_notebook(nb)
        except KeyError:  # not in the cache: executed without caching, outputs are in the file
            pass
    return nb


NOTEBOOK_CSS = "notebook.css"
_NOTEBOOK_CSS_PARTS = ("lab/static/index.css", "lab/static/theme-light.css", "reveal/static/custom_reveal.css")


def write_notebook_css(exporter, out_dir: Path) -> Path:
    """nbconvert's notebook styles, which its reveal template inlines in every deck (250 kB
    each), written once into the decks' folder; the template links them."""
    parts = []
    for part in _NOTEBOOK_CSS_PARTS:
        found = [Path(d) / part for d in exporter.template_paths if (Path(d) / part).is_file()]
        found += [Path(d).parent / part for d in exporter.template_paths if (Path(d).parent / part).is_file()]
        if not found:
            raise SlideSourceError(f"nbconvert's {part} not found in its template paths")
        parts.append(f"/* nbconvert {part} */\n" + found[0].read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / NOTEBOOK_CSS
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def build_deck(exporter, nb, chapter: Chapter, out_dir: Path) -> Deck:
    slides, notes = check_structure(nb, chapter.name)
    prepared, _ = BookSlidesPreprocessor(chapter).preprocess(nb, {})
    prepared.metadata["title"] = f"{chapter.title} · tinyformer"
    body, _ = exporter.from_notebook_node(prepared, resources={"metadata": {"name": chapter.title},
                                                               "notebook_css": NOTEBOOK_CSS})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{chapter.name}.slides.html"
    path.write_text(body, encoding="utf-8")
    figures = sum("tinyformer_figure" in c.metadata for c in prepared.cells if slide_type(c) not in ("skip", None))
    return Deck(chapter.name, path, slides, notes, figures)


def load_glue(executed: Path) -> dict:
    path = executed.with_suffix(".glue.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def bibliography_citer(bibfile: Path, bibliography_page: str = "../bibliography.html"):
    """``{cite:p}`` as "(Vaswani et al., 2017)" and ``{cite:t}`` as "Vaswani et al. (2017)", linked
    to the book's bibliography: the author-year style the pages use."""
    from pybtex.database import parse_file

    entries = parse_file(str(bibfile)).entries

    def names(key):
        if key not in entries:
            raise SlideSourceError(f"{{cite}} key {key!r} is not in {bibfile.name}")
        people = entries[key].persons.get("author") or entries[key].persons.get("editor") or []
        last = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people]
        who = (last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2
               else f"{last[0]} et al." if last else entries[key].fields.get("title", key))
        return who, entries[key].fields.get("year", "n.d.")

    def cite(keys, textual=False):
        parts = [names(k) for k in keys]
        if textual:
            text = "; ".join(f"{who} ({year})" for who, year in parts)
        else:
            text = "(" + "; ".join(f"{who}, {year}" for who, year in parts) + ")"
        return f"[{text}]({bibliography_page})"

    return cite
