"""The reader's notebook (_ext/reader_notebook.py), made from the real chapters' sources: what
Binder opens and Colab opens. Light: no build, no kernel (tests/test_binder.py runs them)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from site_build import ROOT, notebook_files

sys.path.insert(0, str(ROOT / "_ext"))
import book_citation  # noqa: E402
import book_slides  # noqa: E402
import reader_notebook as rn  # noqa: E402

CHAPTERS = notebook_files()
SITE = rn.Site.from_repository()
CFF = book_citation.load_cff(ROOT / "CITATION.cff")
BIBLIOGRAPHY_URL = book_citation.chapter_url(CFF, "bibliography")


def _source(name):
    return jupytext.read(ROOT / "book" / f"{name}.md", fmt="md:myst")


def _is_notes(cell):
    return cell.metadata.get("slideshow", {}).get("slide_type") == "notes"


def _fake_glue(name):
    """Every value the chapter glues, as a distinctive number (or a Markdown table for {glue:md})."""
    text = (ROOT / "book" / f"{name}.md").read_text(encoding="utf-8")
    names = {m.split(":")[0] for m in re.findall(r"\{glue(?::text)?\}`([^`]+)`", text)}
    tables = set(re.findall(r"```\{glue:md\}\s+(\S+)", text))
    glue = {n: {"data": {"text/plain": "0.123456"}} for n in names}
    glue.update({n: {"data": {"text/markdown": "| a |\n| - |\n| 1 |", "text/plain": "t"}} for n in tables})
    return glue


def _notebook(name, target, glue=None):
    return rn.reader_notebook(ROOT / "book" / f"{name}.md", target, site=SITE, glue=glue)


def _prose(text):
    """A note's words, without markup: what must not reach the reader."""
    return re.sub(r"\s+", " ", re.sub(r"\{[a-z:]+\}`[^`]*`|\$[^$]*\$", "", text)).strip()


@pytest.mark.parametrize("target", rn.TARGETS)
@pytest.mark.parametrize("name", CHAPTERS)
def test_the_notebook_is_what_the_page_shows(name, target):
    source = _source(name)
    nb = _notebook(name, target, glue=_fake_glue(name) if target == "colab" else None)
    nbformat.validate(nb)
    assert nb.cells[0].metadata["tags"] == [rn.INSTALL_TAG] and nb.cells[0].cell_type == "code"
    # The code cells are the page's, in order: every cell not tagged remove-cell; those whose
    # code the page hides (remove-input: the page shows their output) are collapsed.
    shown = [c for c in source.cells if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", [])]
    code = [c for c in nb.cells[1:] if c.cell_type == "code"]
    assert [c.source for c in code] == [c.source for c in shown]
    for ours, theirs in zip(code, shown):
        hidden = "remove-input" in theirs.metadata.get("tags", [])
        assert ours.metadata.get("jupyter", {}).get("source_hidden", False) == hidden
    text = "\n".join(c.source for c in nb.cells)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    # No speaker notes, no build machinery.
    notes = [c for c in source.cells if _is_notes(c)]
    assert name == "intro" or notes, f"{name}: the chapter has no notes, so this test checks nothing"
    page = _prose("\n".join(c.source for c in source.cells if c.cell_type == "markdown" and not _is_notes(c)))
    for note in notes:
        for sentence in re.split(r"(?<=[.?!])\s", _prose(note.source)):
            if len(sentence) > 30 and sentence not in page:  # not a sentence the page itself says
                assert sentence not in _prose(markdown), f"{name}: a speaker note reached the notebook: {sentence!r}"
    for hidden in (c for c in source.cells if c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", [])):
        assert hidden.source not in text
    # No raw MyST: every role resolved, no block breaks or cross-reference targets.
    for raw in ("{cite", "{doc}", "{glue", "{claim}", "+++", "{raw}", "{tab-"):
        assert raw not in markdown, f"{name} ({target}): {raw!r} left in the notebook"
    assert not re.search(r"^\([\w.:-]+\)=", markdown, re.M)
    fences = re.findall(r"^:{3,}.*$", markdown, re.M)
    if target == "colab":
        assert not fences, f"{name}: MyST directives in the Colab notebook: {fences[:3]}"
    else:  # admonitions and dropdowns only, which jupyterlab-myst renders, each one closed
        opened = [f for f in fences if "{" in f]
        assert all(re.fullmatch(r":::+\{(admonition|note|tip|warning|dropdown|important|seealso)\}.*", f) for f in opened)
        assert len(fences) == 2 * len(opened), f"{name}: unbalanced directive fences"
    # Citations are text linked to the bibliography page, as many as the page shows.
    cited = sum(len(re.findall(r"\{cite:[pt]\}`", c.source)) for c in source.cells
                if c.cell_type == "markdown" and not _is_notes(c) and "remove-cell" not in c.metadata.get("tags", []))
    assert len(re.findall(r"\d{4}\)?\]\(" + re.escape(BIBLIOGRAPHY_URL) + r"\)", markdown)) == cited
    # Links go to the published site, never to a source file.
    assert not re.search(r"\]\([\w-]+\.md", markdown)


def test_citations_match_the_bibliography_as_pybtex_reads_it():
    """The standard-library reader of references.bib against pybtex, through the slides' citer
    (the decks cite in the same author-year style)."""
    bib = ROOT / "book" / "references.bib"
    cite = book_slides.bibliography_citer(bib, bibliography_page="B")
    entries = rn.read_bibliography(bib)
    assert len(entries) == (ROOT / "book" / "references.bib").read_text().count("\n@") + 1 >= 20
    for key, entry in entries.items():
        who, year = rn.citation_text(entry, key)
        assert cite([key], textual=True) == f"[{who} ({year})](B)", key
    assert rn.citation_text(entries["vaswani2017attention"], "x") == ("Vaswani et al.", "2017")
    assert rn.citation_text(entries["zhang2019rmsnorm"], "x") == ("Zhang and Sennrich", "2019")


def test_citations_and_links_in_a_chapter():
    md = "\n".join(c.source for c in _notebook("attention", "binder").cells if c.cell_type == "markdown")
    assert f"[(Vaswani et al., 2017)]({BIBLIOGRAPHY_URL})" in md
    assert f"[Masks: causal vs bidirectional]({book_citation.chapter_url(CFF, 'masks')})" in md
    assert "Ask the group" not in md and "Where we are in the model: the highlighted part" not in md


def test_glued_values_are_the_builds_for_colab_and_a_link_to_the_page_for_binder():
    glue = _fake_glue("attention")
    glue["score_river_bank"] = {"data": {"text/plain": "0.754898726940155"}}
    colab = "\n".join(c.source for c in _notebook("attention", "colab", glue).cells)
    assert '"bank" (row 2) scores 0.755 against "river"' in colab
    binder = "\n".join(c.source for c in _notebook("attention", "binder").cells)
    page = book_citation.chapter_url(CFF, "attention")
    assert f'"bank" (row 2) scores [{rn.GLUE_ON_PAGE}]({page}) against "river"' in binder
    assert rn.GLUE_ON_PAGE in _notebook("attention", "binder").cells[1].source  # said once, at the top
    assert rn.GLUE_ON_PAGE not in colab
    del glue["score_river_bank"]
    with pytest.raises(rn.ReaderNotebookError, match="attention.md.*'score_river_bank'"):
        _notebook("attention", "colab", glue)


def test_claims_read_as_the_sentence_the_code_checks():
    nb = _notebook("fast", "binder")
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    claims = rn.chapter_claims(_source("fast"))
    page_roles = [m for c in _source("fast").cells if c.cell_type == "markdown" and not _is_notes(c)
                  for m in re.findall(r"\{claim\}`([^`]+)`", c.source)]
    assert page_roles, "fast's page states no claim: pick a chapter that does"
    for ref in page_roles:
        assert claims[ref] in md


def test_admonitions_for_binder_and_colab():
    binder = _notebook("attention", "binder").cells[2].source  # after the install cell and the note on glued values
    colab = _notebook("attention", "colab", _fake_glue("attention")).cells[1].source
    assert ":::{admonition} Learning objectives\n:class: objectives\n- Compute queries" in binder
    assert "> **Learning objectives**\n>\n> - Compute queries" in colab
    solutions = next(c.source for c in _notebook("attention", "colab", _fake_glue("attention")).cells
                     if "Solutions" in c.source)
    assert "<details><summary><b>Solutions</b></summary>" in solutions and solutions.rstrip().endswith("</details>")


def test_install_cell_installs_only_where_tinyformer_is_missing(monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    source = _notebook("attention", "colab", _fake_glue("attention")).cells[0].source
    code = TransformerManager().transform_cell(source)  # as IPython (Colab, JupyterLab) runs it
    calls = []

    class Shell:
        def run_line_magic(self, magic, line, *args):
            calls.append((magic, line))

    import importlib.util

    exec(code, {"get_ipython": lambda: Shell()})
    assert calls == []  # tinyformer is installed here, as in Binder
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tinyformer" else object())
    exec(code, {"get_ipython": lambda: Shell()})
    assert len(calls) == 1 and calls[0][0] == "pip"
    assert f'"tinyformer @ git+{SITE.repository_url}@main"' in calls[0][1] and '"myst-nb>=1.1"' in calls[0][1]


def test_bad_markup_is_refused_with_the_chapter_and_cell(tmp_path):
    head = (ROOT / "book" / "attention.md").read_text(encoding="utf-8").split("+++", 1)[0]
    cases = {
        "{cite:p}`nosuchkey2020`": "'nosuchkey2020' is not in references.bib",
        "{doc}`nosuchpage`": "names no page",
        "{ref}`x`": r"role \{ref\}",
        ":::{figure} x.png\n:::": r"directive \{figure\}",
        ":::{note}\nnever closed": "not closed",
        "{claim}`never-made`": "never makes",
    }
    for markup, message in cases.items():
        path = tmp_path / "bad.md"
        path.write_text(head + "\n# Bad\n\n" + markup + "\n", encoding="utf-8")
        with pytest.raises(rn.ReaderNotebookError, match=r"bad\.md, cell \d+ \(markdown\).*" + message):
            rn.reader_notebook(path, "binder", site=SITE)
    with pytest.raises(ValueError, match="target 'jupyterlite'"):
        rn.reader_notebook(ROOT / "book" / "attention.md", "jupyterlite", site=SITE)


def test_every_address_comes_from_the_one_url_function(monkeypatch):
    """The published address is made in one place: an edition at /0.2.0/ changes every link."""
    monkeypatch.setattr(book_citation, "chapter_url", lambda cff, doc: f"https://example.org/0.2.0/{doc}.html")
    md = "\n".join(c.source for c in _notebook("attention", "binder").cells if c.cell_type == "markdown")
    urls = re.findall(r"\]\((https?://[^)\s]+)\)", md)
    ours = [u for u in urls if "tinyformer.github.io" in u or "example.org" in u]
    assert ours and all(u.startswith("https://example.org/0.2.0/") for u in ours), ours


def test_binder_launch_path_is_where_postbuild_writes():
    assert rn.binder_urlpath("attention") == f"lab/tree/{rn.BINDER_DIR}/attention.ipynb"
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert f"python _ext/reader_notebook.py --target binder --out {rn.BINDER_DIR}\n" in post_build
    assert f"/{rn.BINDER_DIR}/" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.parametrize("target", rn.TARGETS)
def test_quoted_library_code_is_the_library_source(target):
    """A {literalinclude} with :pyobject: shows the same lines as the page: the function's source
    as Python's inspect reads it (an independent reader of the same file), dedented."""
    import inspect
    import textwrap

    import tinyformer as tf

    nb = _notebook("training", target, glue=_fake_glue("training") if target == "colab" else None)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{literalinclude}" not in markdown
    for obj in (tf.optim.cosine_lr_schedule, tf.optim.AdamW.step, tf.losses.cross_entropy):
        source = textwrap.dedent(inspect.getsource(obj)).rstrip("\n")
        assert f"```python\n{source}\n```" in markdown, obj.__qualname__
