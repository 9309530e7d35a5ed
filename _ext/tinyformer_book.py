"""Sphinx glue for the tinyformer book (declared in _config.yml as a local extension).

1. The theme: adds assets/css/style.css (the site's own look) to every page,
   and serves assets/vendor/ (KaTeX's stylesheet and fonts, the decks' MathJax) locally.
2. No stale pages: jupyter-cache keys a notebook on its code cells only, so a
   change inside the tinyformer package would otherwise reuse old outputs.
   The execution cache lives in a folder named after a hash of the package and of
   benchmarks/results/ (which a chapter reads), and every chapter is re-read when
   either, or this extension, changes.
3. Claims (tinyformer/book/claims.py): kernels started by the build know they are in the
   build and which chapter they run (environment variables), and record every claim and
   figure description there. This extension writes each figure's alt text and caption from
   those records and collects every claim into _build/html/claims.json.
4. Trained runs: before a chapter that loads the book's trained models is read, the runs
   missing from the cache are trained by `python -m tinyformer.book.runs`, with progress.
5. The playground (book/playground.md): only that page loads assets/playground/ (its script and
   styles), and after the build the book's trained model is exported to ONNX beside it
   (tinyformer/book/export.py, in a subprocess, so Sphinx itself never imports torch).
6. The reading group's material, made from the same chapters by the same build:
   a "Cite this chapter" BibTeX entry at the end of each chapter (book_citation.py); a slide
   deck per chapter from the notebook MyST-NB executed for the page, with a "Slides" button in
   the chapter's header and a page listing every deck (book_slides.py); and an "Open in Colab"
   notebook per chapter with its launch button (book_colab.py), made by the same generator as the
   notebook "Launch in Binder" opens (reader_notebook.py; the Binder button is pointed at it).
7. Editions (``python3 tasks.py release X.Y.Z``): the version, read from the top-level VERSION
   file, is stamped into every page at build time: the version switcher (pydata-sphinx-theme's,
   in each page's header, fed by the site root's versions.json, which release writes) and its
   banner on an older edition, the citations (each chapter's BibTeX and the "How to cite" page:
   ``{edition-citation}``) and the Colab notebooks (the edition's folder, the edition's tag).
   The build writes edition.json (version, date, commit, strict or not), which release checks
   before it publishes a folder, and a versions.json naming only itself, so a build served on
   its own has a working switcher.
8. No builder's paths on the site: tracebacks (the cells tagged raises-exception) and stderr on
   the pages and in the decks name files relative to the repository (``tinyformer/tokenizer.py``)
   and the installed packages as ``<site-packages>/``, not the builder's home and Python.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes
from sphinx.errors import ExtensionError
from sphinx.util import logging

import book_citation
import book_colab
import book_math
import book_slides
import book_speed
import reader_notebook
from book_toc import chapter_names

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CSS_DIR = ROOT / "assets" / "css"
TEMPLATES_DIR = ROOT / "assets" / "templates"  # overrides of theme components (accessibility)
VENDOR_DIR = ROOT / "assets" / "vendor"  # third-party assets served locally (KaTeX, MathJax, onnxruntime-web, reveal.js)
PLAYGROUND_DIR = ROOT / "assets" / "playground"  # the playground page's own script and styles
PLAYGROUND_PAGE = "playground"
PLAYGROUND_OUT = "_static/playground"  # the exported model, beside the site's static files
CITATION = ROOT / "CITATION.cff"
VERSION_FILE = ROOT / "VERSION"  # the one place the version is written (tasks.py release sets it)
# Where each page finds the list of editions: the site root's versions.json (release writes it).
# Relative to the page's folder, and every page is at the top of its edition's folder; served
# on its own, a build is the root, and ".." of the root is the root (the build's own versions.json).
SWITCHER_JSON = "../versions.json"


def _load_files_module():
    """tinyformer/files.py (the package's one hasher, standard library only), loaded by path:
    importing the package would import torch."""
    spec = importlib.util.spec_from_file_location("_tinyformer_files", ROOT / "tinyformer" / "files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_files = _load_files_module()
package_hash, sha256_file = _files.package_hash, _files.sha256_file
RESULTS_DIR = ROOT / "benchmarks" / "results"  # read by the "Making it fast" chapter


def execution_key() -> str:
    """What chapter outputs depend on besides their own code: the package and the committed
    benchmark results."""
    results = package_hash(RESULTS_DIR)[:8] if RESULTS_DIR.is_dir() else "none"
    return f"{package_hash()}-{results}"


def _rendering_hash() -> str:
    """The package plus this extension (and CITATION.cff, which every chapter quotes): an edit
    to any must re-render every page."""
    cff = sha256_file(CITATION)[:8] if CITATION.exists() else "none"
    cff += sha256_file(VERSION_FILE)[:8] if VERSION_FILE.exists() else "none"
    return execution_key() + package_hash(Path(__file__).resolve().parent) + cff


def _config_inited(app, config):
    config.html_static_path = [*config.html_static_path, str(CSS_DIR), str(VENDOR_DIR), str(PLAYGROUND_DIR)]
    config.templates_path = [str(TEMPLATES_DIR), *config.templates_path]
    # Jupyter Book builds html_theme_options from _config.yml (launch buttons,
    # repository); add to it here rather than replace it from sphinx.config.
    config.html_theme_options = {**config.html_theme_options, "show_toc_level": 2}
    # The edition this build is: every page carries it (switcher, banner, citations, Colab links).
    cff = book_citation.load_cff(CITATION, VERSION_FILE)
    config.version = config.release = str(cff["version"])  # DOCUMENTATION_OPTIONS.VERSION: the banner's
    config.html_theme_options.update({
        "switcher": {"json_url": SWITCHER_JSON, "version_match": config.release},
        "check_switcher": False,  # the list is the published site's (release writes it), not the source's
        "show_version_warning_banner": True,  # on an older edition: a link to this page in the newest
        "article_header_end": ["version-switcher", "article-header-buttons"],
    })
    # pydata's layout reads {{ default_mode }}, which sphinx-book-theme never sets: without it a
    # first-time visitor's console shows "Got invalid theme mode: ." Follow the system setting.
    config.html_context = {**config.html_context, "default_mode": "auto"}
    key = execution_key()
    cache = Path(app.outdir).parent / ".jupyter_cache"
    config.nb_execution_cache_path = str(cache / f"tinyformer-{key}")
    # Claims are recorded by the kernels when a chapter executes, so they live beside the
    # execution cache under the same key: a cached chapter keeps the claims it made when it ran.
    app.tinyformer_claims_dir = cache / f"tinyformer-{key}-claims"
    os.environ["TINYFORMER_BOOK_BUILD"] = "1"  # read by tinyformer.book.page.in_book_build()
    os.environ["TINYFORMER_CLAIMS_DIR"] = str(app.tinyformer_claims_dir)
    # The TOC the build reads (book/_toc.yml, a link to the top-level one).
    app.tinyformer_chapters = chapter_names(Path(app.srcdir) / "_toc.yml", Path(app.srcdir))
    app.tinyformer_cff = cff


def _source_read(app, docname, source):
    """Sphinx reads one document at a time and myst-nb executes it while reading: the kernel
    it starts inherits this variable and so knows which chapter it runs."""
    os.environ["TINYFORMER_CHAPTER"] = docname


# An absolute path (from /, ~/ or a drive) up to and including a site-packages (or Debian's
# dist-packages) folder, or a Python's standard library folder (lib/python3.11/): the rest of the
# path (torch/nn/functional.py) is what a reader needs. A path's characters stop at whitespace,
# quotes, brackets and the ESC of an ANSI colour code (a traceback in a notebook is coloured).
_PATH_CHARS = r"(?:~|[A-Za-z]:)?[/\\][^\s\"'()<>\x1b]*"
_SITE_PACKAGES = re.compile(_PATH_CHARS + r"[/\\](?:site|dist)-packages[/\\]")
_STDLIB = re.compile(_PATH_CHARS + r"[/\\]lib[/\\]python\d+\.\d+[/\\]")


def without_builder_paths(text: str, root: Path = ROOT, home: Path | None = None) -> str:
    """``text`` (a traceback, stderr) with the builder's folders taken out: installed packages
    become ``<site-packages>/``, the standard library ``<python>/``, files of the repository
    relative paths (``tinyformer/tokenizer.py``), and anything else under the home folder
    ``~/``. IPython writes the home folder as ``~``, so both spellings are replaced."""
    home = Path.home() if home is None else home
    text = _SITE_PACKAGES.sub("<site-packages>/", text)
    text = _STDLIB.sub("<python>/", text)
    spellings = [str(root)]
    if root.is_relative_to(home) and root != home:
        spellings.append("~/" + root.relative_to(home).as_posix())
    for spelling in spellings:
        text = text.replace(spelling + os.sep, "").replace(spelling + "/", "")
        text = re.sub(re.escape(spelling) + r"(?![\w.-])", ".", text)
    if str(home) not in ("/", ""):
        text = re.sub(re.escape(str(home)) + r"(?![\w.-])", "~", text)
    return text


def _published_paths_in_outputs(app, doctree):
    """Error and stderr outputs on a page (MyST-NB's literal blocks with class traceback or
    stderr), rewritten by without_builder_paths before they are stored and rendered."""
    for block in doctree.findall(nodes.literal_block):
        if not {"traceback", "stderr"} & set(block.get("classes", [])):
            continue
        text = block.astext()
        clean = without_builder_paths(text)
        if clean != text:
            block.children = [nodes.Text(clean)]
            block.rawsource = clean


def _published_paths_in_notebook(nb) -> None:
    """The same for the executed notebook a slide deck is made from: error outputs (traceback
    lines and message) and stderr streams."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [without_builder_paths(line) for line in output.get("traceback", [])]
                output["evalue"] = without_builder_paths(output.get("evalue", ""))
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output.get("text", "")
                output["text"] = without_builder_paths("".join(text) if isinstance(text, list) else text)


def _records(app, docname: str) -> list[dict]:
    path = app.tinyformer_claims_dir / f"{docname}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _claim_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{claim}`ref``` in a page's prose (or a speaker note, which the page hides): the text of
    the claim the chapter's code made with ``claim(..., ref=ref)``, which held, or an error."""
    env = inliner.document.settings.env
    app = env.app
    ref = text.strip()
    record = next((r for r in _records(app, env.docname) if r["kind"] == "claim" and r.get("ref") == ref), None)
    if record is None or not record.get("held"):
        why = "never made" if record is None else "refuted by its output"
        msg = inliner.reporter.error(f"{{claim}}`{ref}` cites a claim {why} in {env.docname} "
                                     f"(claim(..., ref={ref!r}))", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.Text(record["text"])], []


def _describe_figures(app, doctree):
    """Alt text and captions written by the chapter's code (describe_figure), from the same data
    as the picture, replace what the cell metadata says."""
    docname = app.env.docname
    figures = {r["name"]: r for r in _records(app, docname) if r["kind"] == "figure"}
    found = set()
    for figure in doctree.findall(nodes.figure):
        name = next((n for n in figure["names"] + figure["ids"] if n in figures), None)
        if name is None:
            continue
        found.add(name)
        record = figures[name]
        for image in figure.findall(nodes.image):
            image["alt"] = record["alt"]
        if record.get("caption"):
            for caption in figure.findall(nodes.caption):
                caption.children = [nodes.Text(record["caption"])]
    for name in sorted(set(figures) - found):
        logger.warning(f"describe_figure({name!r}) in {docname}: no figure with that name on the page",
                       location=docname)


def _cite_this_chapter(app, doctree):
    """End each chapter with its own BibTeX entry. Runs before Sphinx's collectors read the
    doctree (priority 400), so the section is in the page's table of contents."""
    docname = app.env.docname
    if docname not in app.tinyformer_chapters:
        return
    chapter = doctree.next_node(nodes.section)
    title = chapter.next_node(nodes.title).astext()
    cff = app.tinyformer_cff
    entry = book_citation.chapter_bibtex(cff, docname, title)
    section = nodes.section(ids=["cite-this-chapter"], names=["cite this chapter"])
    section += nodes.title(text="Cite this chapter")
    intro = nodes.paragraph()
    intro += nodes.Text(f"This chapter, as it reads in edition {cff['version']} of the book (released "
                        f"{cff['date-released']}), at an address that keeps serving this text; for the whole "
                        f"book see ")
    link = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget="/cite", refdoc=docname,
                                 refexplicit=True, refwarn=True)
    link += nodes.inline(text="How to cite")
    intro += [link, nodes.Text(".")]
    section += intro
    section += nodes.literal_block(entry, entry, language="bibtex")
    chapter += section
    doctree.ids["cite-this-chapter"] = section


class EditionCitationDirective(Directive):
    """``{edition-citation}``: which edition this is (number, date, stable address) and the
    BibTeX entry for the whole book in it, from VERSION and CITATION.cff."""

    def run(self):
        cff = self.state.document.settings.env.app.tinyformer_cff
        address = book_citation.edition_url(cff)
        intro = nodes.paragraph()
        intro += nodes.Text(f"You are reading edition {cff['version']}, released {cff['date-released']}. "
                            f"Its pages stay at ")
        intro += nodes.reference("", address, refuri=address)
        intro += nodes.Text(" unchanged when a newer edition is published, so a citation of it keeps leading "
                            "to the text that was read; the version switcher at the top of each page lists "
                            "every edition.")
        entry = book_citation.book_bibtex(cff)
        return [intro, nodes.literal_block(entry, entry, language="bibtex")]


class slide_decks(nodes.General, nodes.Element):
    """Placeholder for the list of decks; filled in once every chapter's title is known."""


class SlideDecksDirective(Directive):
    """``{slide-decks}``: a list linking every chapter's slide deck, in reading order."""

    def run(self):
        return [slide_decks()]


def _fill_slide_decks(app, doctree, docname):
    from sphinx.util.osutil import relative_uri

    here = app.builder.get_target_uri(docname)
    for placeholder in doctree.findall(slide_decks):
        items = nodes.bullet_list()
        for chapter in app.tinyformer_chapters:
            para = nodes.paragraph()
            deck = relative_uri(here, f"{book_slides.SLIDES_DIR}/{chapter}.slides.html")
            para += nodes.reference("", app.env.titles[chapter].astext(), refuri=deck)
            para += nodes.Text(" (slides; the ")
            para += nodes.reference("", "chapter", internal=True, refuri=relative_uri(here, app.builder.get_target_uri(chapter)))
            para += nodes.Text(")")
            items += nodes.list_item("", para)
        placeholder.replace_self(items)


def _reading_group_buttons(app, pagename, templatename, context, doctree):
    """A "Slides" button in each chapter's header, and Colab beside Binder in its launch menu
    (after sphinx-book-theme has made its buttons, priority 501)."""
    if pagename not in app.tinyformer_chapters or "header_buttons" not in context:
        return
    buttons = context["header_buttons"]
    launch = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if launch is None:
        raise ExtensionError(f"{pagename}: sphinx-book-theme made no launch buttons to add Colab to")
    repository = app.config.html_theme_options["repository_url"]
    launch["buttons"].append({"type": "link", "text": "Colab", "tooltip": "Open in Colab",
                              "icon": "_static/images/logo_colab.png",
                              "url": book_colab.colab_url(repository, pagename, edition=app.config.release)})
    slides = context["pathto"](f"{book_slides.SLIDES_DIR}/{pagename}.slides.html", 1)
    buttons.insert(0, {"type": "link", "text": "Slides", "tooltip": "This chapter's slides, with speaker notes",
                       "icon": "fa-solid fa-person-chalkboard", "url": slides, "label": "slides"})


def _binder_opens_the_reader_notebook(app, pagename, templatename, context, doctree):
    """sphinx-book-theme's Binder button opens the page's source (book/<page>.md), where a reader
    would meet the speaker notes and the build's checks; point it at the reader's notebook that
    binder/postBuild writes (reader_notebook.py) instead."""
    launch = next((b for b in context.get("header_buttons", []) if b.get("label") == "launch-buttons"), None)
    if launch is None:
        return
    for button in launch["buttons"]:
        if button.get("text") == "Binder":
            url, found = re.subn(r"urlpath=[^&]+", "urlpath=" + reader_notebook.binder_urlpath(pagename), button["url"])
            if found != 1:
                raise ExtensionError(f"{pagename}: the Binder button's URL has no urlpath to point at the notebook: {url}")
            button["url"] = url


def _deck_key(app, name: str, executed: Path, records: list[dict], titles: dict) -> str:
    """What one chapter's deck is made from: the executed notebook and its glue, the execution
    cache it takes its outputs from, the claim and figure records, the titles and bibliography it
    links, and the code and template that make it. The same key means the same deck."""
    digest = hashlib.sha256()
    for path in (executed, executed.with_suffix(".glue.json"), Path(app.srcdir) / "references.bib"):
        digest.update(path.read_bytes() if path.exists() else b"-")
    digest.update(json.dumps([records, titles, app.config.nb_execution_cache_path], sort_keys=True).encode())
    digest.update(package_hash(Path(__file__).resolve().parent).encode())
    digest.update(package_hash(ROOT / "assets" / "slides").encode())
    return digest.hexdigest()


def _reading_group_outputs(app, exception):
    """After the pages: a deck per chapter from the notebook MyST-NB executed for its page (no
    second run, so no stale figure), and the Colab notebooks. A deck whose inputs have not
    changed since it was written (``_deck_key``) is kept, so a build with no change stays fast."""
    if exception is not None or app.builder.name != "html" or not app.tinyformer_chapters:
        return
    start = time.perf_counter()
    outdir = Path(app.outdir)
    slides_dir = outdir / book_slides.SLIDES_DIR
    executed_dir = outdir.parent / "jupyter_execute"
    made_from = outdir.parent / ".slides_keys"  # one file per deck: the key it was made from, and its counts
    titles = {doc: app.env.titles[doc].astext() for doc in app.env.found_docs}
    cite = exporter = None
    summary, rebuilt = {}, 0
    for name in app.tinyformer_chapters:
        executed = executed_dir / f"{name}.ipynb"
        if not executed.exists():
            raise ExtensionError(f"slides: {executed} is missing (MyST-NB writes it when it reads the page); "
                                 f"rebuild with `python3 tasks.py build --clean`")
        records = _records(app, name)
        key = _deck_key(app, name, executed, records, titles)
        record = made_from / f"{name}.json"
        if (slides_dir / f"{name}.slides.html").exists() and record.exists():
            kept = json.loads(record.read_text(encoding="utf-8"))
            if kept.get("key") == key:
                summary[name] = kept["deck"]
                continue
        if exporter is None:
            cite = book_slides.bibliography_citer(Path(app.srcdir) / "references.bib")
            exporter = book_slides.make_exporter()
            book_slides.write_notebook_css(exporter, slides_dir)
        figures = {r["name"]: r for r in records if r["kind"] == "figure"}
        claims = {r["ref"]: r for r in records if r["kind"] == "claim" and r.get("ref")}
        chapter = book_slides.Chapter(name=name, title=titles[name], glue=book_slides.load_glue(executed),
                                      figures=figures, titles=titles, cite=cite, claims=claims)
        try:
            nb = book_slides.executed_notebook(executed, app.config.nb_execution_cache_path)
            _published_paths_in_notebook(nb)
            deck = book_slides.build_deck(exporter, nb, chapter, slides_dir)
        except book_slides.SlideSourceError as exc:
            raise ExtensionError(f"slides: {exc}") from None
        summary[name] = {"slides": deck.slides, "notes": deck.notes, "figures": deck.figures}
        made_from.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"key": key, "deck": summary[name]}) + "\n", encoding="utf-8")
        rebuilt += 1
    made = time.perf_counter() - start
    notebooks = book_colab.write_notebooks(Path(app.srcdir), outdir, app.tinyformer_chapters,
                                           app.config.html_theme_options["repository_url"], keys_dir=made_from,
                                           glue_dir=executed_dir,
                                           ref=f"v{app.config.release}")
    (slides_dir / "decks.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    logger.info(f"slides: {len(summary)} decks ({sum(d['slides'] for d in summary.values())} slides, "
                f"{rebuilt} made anew) in {made:.1f} s; {len(notebooks)} Colab notebooks in "
                f"{time.perf_counter() - start - made:.1f} s")


def _write_claims(app, exception):
    if exception is not None or app.builder.name != "html":
        return
    claims, figures = [], []
    for docname in sorted(app.env.found_docs):
        for record in _records(app, docname):
            (claims if record["kind"] == "claim" else figures).append(record)
    failed = [c for c in claims if not c["held"]]
    out = Path(app.outdir) / "claims.json"
    out.write_text(json.dumps({"claims": claims, "figures": figures}, indent=1, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    if failed:  # a failing claim raises in its cell first; this catches a record from a lax run
        raise ExtensionError(f"{len(failed)} claims do not hold, e.g. {failed[0]['chapter']}: {failed[0]['text']!r}")


def _outdated(app, env, added, changed, removed):
    key = _rendering_hash()
    previous = getattr(env, "tinyformer_rendering_hash", None)
    env.tinyformer_rendering_hash = key
    if previous is not None and previous != key:
        return sorted(env.found_docs)  # package or extension changed: re-read (and, if the package changed, re-execute) all
    # The decks are made from the notebooks MyST-NB writes when it reads a page: re-read (from the
    # execution cache) a chapter whose notebook has gone.
    executed = Path(app.outdir).parent / "jupyter_execute"
    return [c for c in app.tinyformer_chapters if c in env.found_docs and not (executed / f"{c}.ipynb").exists()]


def _unique_scripts(app, pagename, templatename, context, doctree):
    """sphinx-thebe registers its inline configuration once per read phase, so pages
    could carry it twice ("Identifier 'THEBE_JS_URL' has already been declared"). The list is
    deduplicated in place: it is the builder's own, which pydata-sphinx-theme's handlers add
    their inline scripts to afterwards (DOCUMENTATION_OPTIONS.pagename and the version
    switcher's settings); a copy would leave those off the page."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the same file or inline body, whatever priority it was registered with
        # (inline scripts come with filename None or "", depending on who registered them)
        key = (getattr(script, "filename", script) or "", getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


def _accessible_citations(app, pagename, templatename, context, doctree):
    """docutils lists citations as role="list" with role="doc-biblioentry" children, a
    deprecated role that axe-core does not accept as a list item (aria-required-children)."""
    if "body" in context:
        context["body"] = context["body"].replace('role="doc-biblioentry"', 'role="listitem"')


def _run_chapters(runs_module: Path = ROOT / "tinyformer" / "book" / "runs.py") -> tuple[str, ...]:
    """``RUN_CHAPTERS`` as tinyformer/book/runs.py defines it, read from its source (importing
    it would import torch): the one list of the chapters that load the book's runs."""
    tree = ast.parse(runs_module.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUN_CHAPTERS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise ExtensionError(f"{runs_module} defines no RUN_CHAPTERS: the build cannot tell which chapters load the runs")


RUN_CHAPTERS = _run_chapters()


def _prepare_runs(app, env, docnames):
    """Train the book's runs (tinyformer.book.runs) before any chapter that loads them is read,
    in a process of their own whose progress shows in the build log: on a fresh clone that is
    a few minutes of training, which would otherwise stall one chapter's execution silently.
    Nothing runs (and torch is not imported) when no such chapter is re-read."""
    if not any(name.split("/")[-1] in RUN_CHAPTERS for name in docnames):
        return
    logger.info("tinyformer: preparing the book's trained runs (python -m tinyformer.book.runs)")
    proc = subprocess.run([sys.executable, "-m", "tinyformer.book.runs"], cwd=ROOT)
    if proc.returncode != 0:
        raise ExtensionError(f"python -m tinyformer.book.runs failed (exit {proc.returncode}): see its output above")


def _playground_assets(app, pagename, templatename, context, doctree):
    """Only the playground page loads its script (which then fetches the runtime and the model)."""
    if pagename == PLAYGROUND_PAGE:
        app.add_css_file("playground.css")
        app.add_js_file("playground.js", type="module")


def _export_playground(app, exception):
    """Export the book's trained model for the playground page, unless the export there is
    already from this package (the model is a deterministic function of it)."""
    if exception is not None or app.builder.name != "html" or PLAYGROUND_PAGE not in app.env.found_docs:
        return
    out = Path(app.outdir) / PLAYGROUND_OUT
    meta_path = out / "model.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            model = out / meta["model"]
            if (meta.get("package_hash") == package_hash() and model.exists()
                    and sha256_file(model) == meta.get("model_sha256")):
                return
        except (ValueError, KeyError, OSError):
            pass  # unreadable: export again
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tinyformer.book.export", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise ExtensionError(f"the playground's model export failed (python -m tinyformer.book.export):\n"
                             f"{proc.stderr[-3000:]}")
    logger.info(f"playground: exported the book's model to {out} in {time.perf_counter() - start:.1f} s")


def _git(*args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _note_pages_read(app, env, docnames):
    app.tinyformer_read_all = set(docnames) >= set(env.found_docs)


def _write_edition(app, exception):
    """edition.json: what this folder is, for `tasks.py release --html` to check before it
    publishes a build it did not make (version and date, the commit and whether the tree had
    uncommitted changes, and whether the build was strict); and versions.json naming only this
    build, so a build served on its own has a working switcher (release replaces it with the
    list of every edition at the site's root)."""
    if exception is not None or app.builder.name != "html":
        return
    cff = app.tinyformer_cff
    outdir = Path(app.outdir)
    status = _git("status", "--porcelain")
    # Strict: warnings are errors (-W; with --keep-going Sphinx counts them and fails at the end),
    # none so far, and every page was read by this build (an incremental build after a lax one
    # would carry pages no strict build has checked).
    strict = (bool(app.warningiserror or app.keep_going) and app._warncount == 0
              and getattr(app, "tinyformer_read_all", False))
    edition = {"version": app.config.release, "date": str(cff["date-released"]),
               "address": book_citation.edition_url(cff), "commit": _git("rev-parse", "HEAD"),
               "clean": status == "", "strict": strict}
    (outdir / "edition.json").write_text(json.dumps(edition, indent=1) + "\n", encoding="utf-8")
    own = [{"name": app.config.release, "version": app.config.release, "url": "./", "preferred": True}]
    (outdir / "versions.json").write_text(json.dumps(own, indent=1) + "\n", encoding="utf-8")


def setup(app):
    app.add_css_file("style.css")
    app.add_css_file("print.css", media="print")  # no navigation, code wrapped: see _ext/book_pdf.py
    app.connect("config-inited", _config_inited)
    app.connect("source-read", _source_read)
    app.connect("doctree-read", _describe_figures)
    app.connect("doctree-read", _published_paths_in_outputs)
    app.connect("doctree-read", _cite_this_chapter, priority=400)
    app.connect("build-finished", _write_claims)
    app.add_role("claim", _claim_role)
    app.connect("env-before-read-docs", _prepare_runs)
    app.connect("build-finished", _reading_group_outputs)
    app.add_node(slide_decks)
    app.add_directive("slide-decks", SlideDecksDirective)
    app.add_directive("edition-citation", EditionCitationDirective)
    app.connect("env-before-read-docs", _note_pages_read)
    app.connect("build-finished", _write_edition, priority=900)  # after the other build steps
    app.connect("doctree-resolved", _fill_slide_decks)
    app.connect("html-page-context", _reading_group_buttons, priority=502)
    app.connect("html-page-context", _binder_opens_the_reader_notebook, priority=502)
    app.connect("env-get-outdated", _outdated)
    app.connect("html-page-context", _unique_scripts)
    app.connect("html-page-context", _accessible_citations)
    # before _unique_scripts, which deduplicates the page's list of scripts
    app.connect("html-page-context", _playground_assets, priority=400)
    app.connect("build-finished", _export_playground)
    book_math.setup(app)  # math typeset at build time (KaTeX): no math script in the pages
    book_speed.setup(app)  # phones and offline reading: page rewrites and the service worker
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
