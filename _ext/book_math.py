"""Math typeset at build time (issue 23): the pages carry each formula as HTML, not as TeX.

A reader's browser used to download MathJax (1.2 MB of script, 264 kB compressed) on every page
with math and typeset the page after loading it, in one task of 0.5 to 1 s on a phone. Here KaTeX
(assets/vendor/katex, run in QuickJS, a JavaScript interpreter installed from PyPI, so building
needs no Node) writes each formula as HTML while Sphinx writes the page, with a MathML copy that
screen readers read. A page with math then loads one stylesheet (6 kB compressed) and the few
fonts its formulas use; no script.

A formula KaTeX cannot typeset is a build warning naming the formula and where it is (the strict
build fails on it), never raw TeX on a page.

The slide decks keep MathJax: reveal.js typesets each deck's math in the browser.
"""

from __future__ import annotations

import functools
from pathlib import Path

from docutils import nodes
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
KATEX_DIR = ROOT / "assets" / "vendor" / "katex"
KATEX_JS = KATEX_DIR / "katex.min.js"  # the build's, not the reader's: removed from the site after the build
STATIC = "katex"  # assets/vendor/katex is served as _static/katex
RENDERER = "katex_static"
# The two fonts nearly every formula uses (letters and digits, italic variables): fetched as soon
# as the page's head is read, so the math does not wait for the stylesheet to ask for them.
PRELOAD_FONTS = ("KaTeX_Main-Regular.woff2", "KaTeX_Math-Italic.woff2")


class MathError(ValueError):
    """KaTeX could not typeset a formula."""


@functools.cache
def _katex():
    import quickjs  # the book's extra (pyproject.toml); only a build needs it

    context = quickjs.Context()
    context.eval(KATEX_JS.read_text(encoding="utf-8"))
    # throwOnError: a formula KaTeX cannot read raises instead of printing itself in red on the page.
    return context.eval("(tex, display) => katex.renderToString(tex, "
                        "{displayMode: display, throwOnError: true, output: 'htmlAndMathml'})")


@functools.lru_cache(maxsize=None)
def render(tex: str, display: bool = False) -> str:
    """The HTML of one formula (KaTeX's markup and its MathML), as the page shows it."""
    import quickjs

    try:
        return _katex()(tex, display)
    except quickjs.JSException as error:
        message = str(error).splitlines()[0].removeprefix("ParseError: ")
        raise MathError(f"KaTeX cannot typeset {tex!r}: {message}") from None


def display_tex(node: nodes.math_block) -> str:
    """The TeX of a display formula, as Sphinx's MathJax renderer arranges it: paragraphs separated
    by a blank line are stacked and aligned, and a paragraph with line breaks is aligned on its &."""
    if node["nowrap"]:
        return node.astext()
    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    parts = [rf"\begin{{aligned}}{part}\end{{aligned}}" if r"\\" in part else part for part in parts]
    if len(parts) > 1:
        return r"\begin{aligned}" + r"\\".join(parts) + r"\end{aligned}"
    return parts[0] if parts else ""


def _typeset(translator, node, tex: str, display: bool) -> str:
    try:
        return render(tex.strip(), display)
    except MathError as error:
        logger.warning(str(error), location=node)
        return translator.encode(tex)


def visit_math(self, node: nodes.math) -> None:
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate nohighlight"))
    self.body.append(_typeset(self, node, node.astext(), display=False))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node: nodes.math_block) -> None:
    self.body.append(self.starttag(node, "div", CLASS="math notranslate nohighlight"))
    if node["number"] and not node["nowrap"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    self.body.append(_typeset(self, node, display_tex(node), display=True))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def _page_context(app, pagename, templatename, context, doctree):
    """KaTeX's stylesheet and its two main fonts, on the pages that have math."""
    if app.builder.format != "html" or getattr(app.builder, "math_renderer_name", None) != RENDERER:
        return
    if not app.env.get_domain("math").has_equations(pagename):
        return
    app.add_css_file(f"{STATIC}/katex.min.css")
    root = context.get("pathto", lambda p, _=1: p)(f"_static/{STATIC}/fonts/", 1)
    context["metatags"] = context.get("metatags", "") + "".join(
        f'\n<link rel="preload" href="{root}{font}" as="font" type="font/woff2" crossorigin>'
        for font in PRELOAD_FONTS)


def _remove_build_script(app, exception):
    """katex.min.js runs in the build only: a reader's browser never needs it."""
    if exception is None and app.builder.format == "html":
        script = Path(app.outdir) / "_static" / STATIC / KATEX_JS.name
        script.unlink(missing_ok=True)


def setup(app):
    app.add_html_math_renderer(RENDERER, (visit_math, None), (visit_displaymath, None))
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _remove_build_script, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

