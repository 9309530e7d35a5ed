"""The reading group's material: per-chapter BibTeX, Colab notebooks, slide decks (sources,
build output) and the vendored reveal.js. The decks in a browser and the PDF are in
test_browser.py; the notebooks on the published branch in test_publish.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup
from packaging.requirements import Requirement
from pybtex.database import parse_string

from site_build import HTML, ROOT, build_site

sys.path.insert(0, str(ROOT / "_ext"))
import book_citation  # noqa: E402
import book_colab  # noqa: E402
import book_slides  # noqa: E402
from tinyformer_book import chapter_names  # noqa: E402

CHAPTERS = chapter_names()
CFF = book_citation.load_cff(ROOT / "CITATION.cff", ROOT / "VERSION")
VERSION = (ROOT / "VERSION").read_text().strip()
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_chapters_are_the_toc_notebooks_in_order():
    assert CHAPTERS[0] == "tokens" and "intro" not in CHAPTERS and "cheatsheet" not in CHAPTERS
    assert len(CHAPTERS) == 13 and CHAPTERS.index("attention") < CHAPTERS.index("fast")


# ------------------------------------------------------------------ Cite this chapter


def test_chapter_bibtex_parses_and_carries_the_book_and_version():
    entry = book_citation.chapter_bibtex(CFF, "attention", "Self-attention, by hand")
    parsed = parse_string(entry, "bibtex").entries["tinyformer2026_attention"]
    assert parsed.type == "incollection"
    assert parsed.fields["title"] == "Self-attention, by hand"
    assert parsed.fields["booktitle"] == CFF["title"]
    assert parsed.fields["version"] == CFF["version"] == VERSION
    assert parsed.fields["date"] == str(CFF["date-released"])
    # the chapter in this edition's folder, which release publishes once and never changes
    assert parsed.fields["url"] == f"https://tinyformer.github.io/tinyformer/{VERSION}/attention.html"
    assert parsed.fields["year"] == "2026"
    assert str(parsed.persons["author"][0]) == "{The tinyformer authors}"  # one entity, not first + last name


def test_chapter_bibtex_escapes_specials_and_refuses_braces():
    entry = book_citation.chapter_bibtex(CFF, "x", "Q&A: 100% of $T$ #1_a")
    assert parse_string(entry, "bibtex").entries["tinyformer2026_x"].fields["title"] == r"Q\&A: 100\% of \$T\$ \#1\_a"
    with pytest.raises(ValueError, match="rephrase"):
        book_citation.chapter_bibtex(CFF, "x", "a {brace}")
    with pytest.raises(ValueError, match="BibTeX key"):
        book_citation.chapter_bibtex(CFF, "bad name", "t")
    persons = book_citation.bibtex_authors([{"family-names": "Vaswani", "given-names": "Ashish"}, {"name": "ACME"}])
    assert persons == "Vaswani, Ashish and {ACME}"


def test_citation_cff_without_a_version_is_refused(tmp_path):
    cff = (ROOT / "CITATION.cff").read_text().replace('version: "0.1.0"\n', "")
    (tmp_path / "CITATION.cff").write_text(cff)
    with pytest.raises(ValueError, match="lacks version"):
        book_citation.load_cff(tmp_path / "CITATION.cff")


# ------------------------------------------------------------------ Colab


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_notebook_validates_and_installs_the_package_first(chapter):
    """Colab's notebook is the reader's notebook (its content: tests/test_reader_notebook.py)."""
    nb = book_colab.chapter_notebook(ROOT / "book" / f"{chapter}.md", REPOSITORY)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "code"
    pip = [line.strip() for line in first.source.splitlines() if line.strip().startswith("%pip install")]
    assert len(pip) == 1, first.source
    requirements = [Requirement(r) for r in re.findall(r'"([^"]+)"', pip[0])]
    ours = [r for r in requirements if r.name == "tinyformer"]
    assert ours and ours[0].url == f"git+{REPOSITORY}@main", pip[0]
    assert any(r.name == "myst-nb" for r in requirements)  # the chapters call myst_nb.glue
    assert re.search(r"^(import|from) tinyformer", "\n".join(c.source for c in nb.cells if c.cell_type == "code"), re.M)
    assert nb.metadata["colab"]["name"] == f"{chapter}.ipynb"
    title = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# "))
    assert title.source.splitlines()[0] == next(l for l in (ROOT / "book" / f"{chapter}.md").read_text().splitlines()
                                                if l.startswith("# "))


def test_colab_url_points_at_the_published_notebook():
    url = book_colab.colab_url(REPOSITORY, "attention")
    assert url == ("https://colab.research.google.com/github/tinyformer/tinyformer/blob/gh-pages/"
                   "notebooks/attention.ipynb")
    edition = book_colab.colab_url(REPOSITORY, "attention", edition="1.2.3")
    assert edition.endswith("/blob/gh-pages/1.2.3/notebooks/attention.ipynb")
    import reader_notebook

    assert reader_notebook.install_source(REPOSITORY, "v1.2.3").count(f"git+{REPOSITORY}@v1.2.3") == 1
    sys.path.insert(0, str(ROOT))
    import tasks  # publish pushes, by default, to the branch these links name (read, not copied)

    assert tasks.publish_branch() == book_colab.PUBLISH_BRANCH
    with pytest.raises(ValueError, match="GitHub"):
        book_colab.colab_url("https://gitlab.com/a/b", "attention")


# ------------------------------------------------------------------ slide sources


def _chapter(name="attention", **kw):
    titles = {"positions": "Embeddings and positions", "attention": "Self-attention, by hand"}
    glue = {"x": {"data": {"text/plain": "0.754898726940155"}}, "word": {"data": {"text/plain": "'river'"}}}
    return book_slides.Chapter(name=name, title="T", glue=glue, titles=titles,
                               cite=book_slides.bibliography_citer(ROOT / "book" / "references.bib"), **kw)


def test_myst_in_slide_cells_becomes_commonmark_with_the_builds_values():
    from myst_nb.core.variables import format_plain_text

    md = book_slides.myst_to_markdown(
        ":::{admonition} Learning objectives\n:class: objectives\n- score {glue:text}`x:.3f`, "
        "word {glue:text}`word`\n:::\n\nSee {doc}`positions` and {doc}`that page <attention>` "
        "{cite:p}`vaswani2017attention`; [below](#exercises).", _chapter(), "here")
    assert '<div class="admonition objectives">' in md and '<p class="admonition-title">Learning objectives</p>' in md
    assert f"score {format_plain_text('0.754898726940155', '.3f')}," in md and "score 0.755," in md
    assert "word river" in md
    assert "[Embeddings and positions](../positions.html)" in md and "[that page](../attention.html)" in md
    assert "[(Vaswani et al., 2017)](../bibliography.html)" in md
    assert "[below](../attention.html#exercises)" in md
    assert "{" not in md.replace("{glue", "")  # no MyST left


def test_quoted_library_code_on_a_slide_is_the_library_source():
    """A {literalinclude} of a library function becomes its source lines as a code block, as
    Python's inspect reads them (an independent reader of the same file)."""
    import inspect
    import textwrap

    import tinyformer as tf

    md = book_slides.myst_to_markdown(
        "Before\n\n```{literalinclude} ../tinyformer/optim.py\n:pyobject: AdamW.step\n:language: python\n```\n",
        _chapter(), "here")
    source = textwrap.dedent(inspect.getsource(tf.optim.AdamW.step)).rstrip("\n")
    assert md == f"Before\n\n```python\n{source}\n```"


@pytest.mark.parametrize("source, problem", [
    ("{numref}`fig-x`", "role {numref}"),
    ("{glue:text}`missing`", "'missing' is not in this chapter's build"),
    ("{doc}`nowhere`", "names no page"),
    (":::{dropdown} Answers\nhidden\n:::", "{dropdown} is not supported"),
    ("```{math}\nx\n```", "not supported on slides"),
    (":::{note}\nnever closed", "not closed"),
    ("```{literalinclude} ../tinyformer/optim.py\n:pyobject: NoSuchThing\n```", "has no 'NoSuchThing'"),
    ("```{literalinclude} ../tinyformer/optim.py\n:lines: 1-3\n```", "have no rendering"),
])
def test_unsupported_myst_on_a_slide_is_an_error_naming_it(source, problem):
    with pytest.raises(book_slides.SlideSourceError, match=re.escape(problem)):
        book_slides.myst_to_markdown(source, _chapter(), "here")


def _notebook(cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, slide_type, tags in cells:
        meta = {"slideshow": {"slide_type": slide_type}} if slide_type else {}
        if tags:
            meta["tags"] = tags
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(make(source, metadata=meta))
    return nb


def _deck_cells(n_slides, notes=True):
    cells = [("md", "# T\n\n:::{admonition} Learning objectives\n:class: objectives\n- a\n:::", "slide", None)]
    cells += [("md", f"## S{i}", "slide", None) for i in range(2, n_slides)]
    cells += [("md", "## Discussion questions\n\n1. why?", "slide", None)]
    out = []
    for cell in cells:
        out.append(cell)
        if notes:
            out.append(("md", "say this", "notes", ["remove-cell"]))
    return out


def test_deck_structure_is_checked():
    assert book_slides.check_structure(_notebook(_deck_cells(8)), "c") == (8, 8)
    with pytest.raises(book_slides.SlideSourceError, match="7 slides"):
        book_slides.check_structure(_notebook(_deck_cells(7)), "c")
    with pytest.raises(book_slides.SlideSourceError, match="21 slides"):
        book_slides.check_structure(_notebook(_deck_cells(21)), "c")
    with pytest.raises(book_slides.SlideSourceError, match="no speaker notes"):
        book_slides.check_structure(_notebook(_deck_cells(9, notes=False)), "c")
    cells = _deck_cells(9)
    cells[0], cells[-2] = cells[-2], cells[0]
    with pytest.raises(book_slides.SlideSourceError, match="first slide must be the chapter's objectives"):
        book_slides.check_structure(_notebook(cells), "c")


def test_preprocessor_skips_unmarked_cells_and_guards_the_notes():
    nb = _notebook([("md", "## A slide {glue:text}`x:.2f`", "slide", None), ("md", "page prose", None, None),
                    ("code", "print(1)", "-", None), ("md", "notes", "notes", ["remove-cell"])])
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    out, _ = book_slides.BookSlidesPreprocessor(_chapter()).preprocess(nb, {})
    assert [book_slides.slide_type(c) for c in out.cells] == ["slide", "skip", "-", "notes"]
    assert out.cells[0].source == "## A slide 0.75"
    assert out.cells[2].metadata["transient"] == {"remove_source": True}  # output only, unless tagged slide-input
    for bad, problem in [([("md", "notes", "notes", None)], "tagged remove-cell"),
                         ([("md", "x\n\n## Next section", "notes", ["remove-cell"])], "'+++' that ends the notes"),
                         ([("code", "x = 1", "slide", None)], "has none")]:
        with pytest.raises(book_slides.SlideSourceError, match=re.escape(problem)):
            book_slides.BookSlidesPreprocessor(_chapter()).preprocess(_notebook(bad), {})


def _notes_deck(note, claims=None):
    nb = _notebook([("md", "## A slide", "slide", None), ("md", note, "notes", ["remove-cell"])])
    return book_slides.BookSlidesPreprocessor(_chapter(claims=claims or {})).preprocess(nb, {})[0]


def test_a_note_states_a_result_only_through_a_claim_the_code_made():
    held = {"prenorm-first-layer": {"kind": "claim", "text": "pre-norm's first layer gets the most gradient",
                                    "held": True, "ref": "prenorm-first-layer"}}
    out = _notes_deck("Point at the plot: {claim}`prenorm-first-layer`, by {glue:text}`x:.2f`.", held)
    assert out.cells[1].source == "Point at the plot: pre-norm's first layer gets the most gradient, by 0.75."
    # A deliberately false note: it cites a claim that the chapter's code refuted, or never made.
    refuted = {"prenorm-even": {"kind": "claim", "text": "pre-norm keeps the gradients even", "held": False,
                                "ref": "prenorm-even"}}
    with pytest.raises(book_slides.SlideSourceError, match="refutes"):
        _notes_deck("Stress it: {claim}`prenorm-even`.", refuted)
    with pytest.raises(book_slides.SlideSourceError, match="never made"):
        _notes_deck("Stress it: {claim}`prenorm-even`.")


@pytest.mark.parametrize("note, number", [
    ("The median is 0.51 times layer 12's gradient.", "0.51"),
    ("Only 11.3% of the targets stay unchanged.", "11.3%"),
    ("The table shows 2.3x from 128 to 256.", "2.3x"),
    ("It keeps about 1e-5 of the mass.", "1e-5"),
])
def test_a_note_cannot_type_a_measured_number(note, number):
    with pytest.raises(book_slides.SlideSourceError, match=re.escape(repr(number))):
        _notes_deck(note)


def test_a_note_may_count_and_use_math_and_glue():
    out = _notes_deck("Four tokens, T = 4, two heads; $\\sqrt{d_{head}} = 2.83$ is math; {glue:text}`x:.3f` is glued.")
    assert "0.755 is glued" in out.cells[1].source


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_marks_its_slides_and_notes(chapter):
    """The source marks 8-20 slides, objectives first and discussion last, notes beside each
    (checked on the MyST source as Jupytext reads it; the build checks the executed notebook)."""
    import jupytext

    nb = jupytext.read(ROOT / "book" / f"{chapter}.md", fmt="md:myst")
    slides, notes = book_slides.check_structure(nb, chapter)
    assert 8 <= slides <= 20 and notes >= slides


# ------------------------------------------------------------------ vendored reveal.js and the decks' look


def test_vendored_reveal_js_matches_its_manifest():
    folder = ROOT / "assets" / "vendor" / "reveal.js"
    listed = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert {"dist/reveal.js", "dist/reveal.css", "plugin/notes/notes.js", "LICENSE"} <= set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} changed"
    assert "5.2.1" in (folder / "README.md").read_text() and "MIT" in (folder / "README.md").read_text()
    assert "reveal.js 5.2.1" in (ROOT / "assets" / "slides" / "tinyformer_reveal" / "index.html.j2").read_text()


def _palette(css: str, selector: str) -> dict:
    block = re.search(re.escape(selector) + r"[^{]*\{([^}]*)\}", css).group(1)
    return dict(re.findall(r"(--[\w-]+):\s*([^;]+);", block))


def test_slides_use_the_sites_light_palette_and_fonts():
    site = _palette((ROOT / "assets" / "css" / "style.css").read_text(), ":root,")
    slides = _palette((ROOT / "assets" / "css" / "slides.css").read_text(), ":root")
    for var in ("--fg", "--bg", "--muted", "--link", "--border", "--accent", "--code-bg"):
        assert slides[var] == site[var], var
    site_font = re.search(r"--pst-font-family-base:\s*([^;]+);", (ROOT / "assets" / "css" / "style.css").read_text())
    assert " ".join(slides["--font"].split()) == " ".join(site_font.group(1).split())


# ------------------------------------------------------------------ the built site


@pytest.fixture(scope="module")
def site():
    result = build_site()
    assert result["returncode"] == 0, "strict build failed:\n" + result["log"][-6000:]
    return result


def _page(name: str) -> BeautifulSoup:
    return BeautifulSoup((HTML / f"{name}.html").read_text(encoding="utf-8"), "html.parser")


@pytest.mark.book
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_ends_with_a_bibtex_entry_that_parses(site, chapter):
    html = _page(chapter)
    section = html.find(id="cite-this-chapter")
    assert section is not None, f"{chapter}: no 'Cite this chapter' section"
    assert section.find_next_sibling("section") is None, f"{chapter}: 'Cite this chapter' is not the last section"
    entries = parse_string(section.select_one("pre").get_text(), "bibtex").entries
    assert list(entries) == [f"tinyformer2026_{chapter}"]
    fields = entries[f"tinyformer2026_{chapter}"].fields
    title = html.select_one("article h1").get_text().replace("#", "").strip()
    assert fields["title"] == book_citation.bibtex_escape(title)
    assert fields["booktitle"] == CFF["title"] and fields["version"] == CFF["version"]
    assert fields["url"] == f"{CFF['url'].rstrip('/')}/{VERSION}/{chapter}.html"
    assert html.select_one("#pst-page-toc-nav a[href='#cite-this-chapter']"), f"{chapter}: not in the page's contents"


@pytest.mark.book
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_header_links_its_slides_and_colab(site, chapter):
    html = _page(chapter)
    slides = html.select_one("a.btn-slides")
    assert slides and slides["href"] == f"slides/{chapter}.slides.html" and "Slides" in slides.get_text()
    assert (HTML / slides["href"]).exists()
    colab = [a["href"] for a in html.select(".dropdown-launch-buttons a") if "colab.research.google.com" in a["href"]]
    assert colab == [book_colab.colab_url(REPOSITORY, chapter, edition=VERSION)]
    # release publishes the build as the edition's folder: the rest of the path is in the build
    published = colab[0].split(f"/blob/{book_colab.PUBLISH_BRANCH}/{VERSION}/", 1)[1]
    assert (HTML / published).exists(), f"the Colab button names {published}, which the build did not write"
    nbformat.validate(nbformat.read(HTML / published, as_version=4))


@pytest.mark.book
def test_every_deck_is_built_from_the_executed_chapter(site):
    decks = json.loads((HTML / "slides" / "decks.json").read_text())
    assert list(decks) == CHAPTERS
    for chapter, deck in decks.items():
        assert 8 <= deck["slides"] <= 20 and deck["notes"] >= deck["slides"], (chapter, deck)
        assert deck["figures"] >= 1, f"{chapter}: no figure on any slide"
        html = (HTML / "slides" / f"{chapter}.slides.html").read_text(encoding="utf-8")
        soup = BeautifulSoup(html, "html.parser")
        assert len(soup.select(".reveal .slides > section")) == deck["slides"]
        assert len(soup.select("aside.notes")) == deck["notes"]
        # Every figure is one the chapter's page shows (the same run's output, byte for byte),
        # with the alt text the page gives it.
        on_page = {}
        for img in _page(chapter).select("article img"):
            if not img["src"].startswith(("http", "data:")):
                on_page[hashlib.sha256((HTML / img["src"]).read_bytes()).hexdigest()] = img.get("alt", "")
        for img in soup.select("img"):
            assert img["src"].startswith("data:image/png;base64,"), chapter
            digest = hashlib.sha256(base64.b64decode(img["src"][22:])).hexdigest()
            assert digest in on_page, f"{chapter}: a slide figure that the page does not show"
            assert img.get("alt", "").strip() and img["alt"] == on_page[digest], f"{chapter}: alt text differs"
        assert "https://" not in "".join(s.get("src", "") + l.get("href", "") for s in soup.select("script")
                                         for l in soup.select("link")), f"{chapter}: the deck loads from the web"
        assert not re.search(r"\{(glue|doc|cite)[:\w]*\}`", soup.get_text()), f"{chapter}: raw MyST on a slide"


@pytest.mark.book
def test_slides_page_lists_every_deck(site):
    links = [a["href"] for a in _page("slides").select("article a") if a["href"].endswith(".slides.html")]
    assert links == [f"slides/{c}.slides.html" for c in CHAPTERS]


def test_a_deck_is_made_again_exactly_when_what_it_is_made_from_changes(tmp_path):
    """A build keeps a deck whose inputs are unchanged (so a no-change build stays fast), and makes
    it again when the executed notebook, its glue, its claims or the execution cache change."""
    from types import SimpleNamespace

    import tinyformer_book

    src = tmp_path / "book"
    src.mkdir()
    (src / "references.bib").write_text("@misc{a, title={A}}\n")
    executed = tmp_path / "attention.ipynb"
    executed.write_text('{"cells": []}')
    app = SimpleNamespace(srcdir=str(src), config=SimpleNamespace(nb_execution_cache_path="/cache/k1"))
    records = [{"kind": "claim", "text": "rows sum to 1", "held": True}]

    def key():
        return tinyformer_book._deck_key(app, "attention", executed, records, {"attention": "Attention"})

    first = key()
    assert key() == first
    executed.write_text('{"cells": [1]}')
    assert key() != first
    changed = key()
    executed.with_suffix(".glue.json").write_text("{}")
    assert key() != changed
    changed = key()
    records.append({"kind": "figure", "name": "fig", "alt": "a"})
    assert key() != changed
    changed = key()
    app.config.nb_execution_cache_path = "/cache/k2"
    assert key() != changed
