"""Fast on a phone and readable offline (issue 23): what the build does to each HTML page.

While a page is written (html-page-context): a meta description, from the chapter's "Learning
objectives" (else its first paragraph). (The math is typeset while the page is written, by
book_math.py: no page loads a math script.)

After the build (build-finished), each page Sphinx wrote is rewritten in place (idempotent, so an
incremental build that leaves a page alone leaves it correct):
- FontAwesome's 1.5 MB script, which the theme loads to turn ``<i class="fa-...">`` into SVG,
  is dropped: the build writes those few icons as inline SVG itself (paths read from the
  theme's own copy of FontAwesome, so they look the same). An icon some script adds later still
  renders, from the theme's icon font; the theme's stylesheet keeps the icon-font rules of the
  icons the pages name and of those its scripts add (KEEP_ICON_RULES), not FontAwesome's 1,900
  (20 kB of the 66 kB it weighs compressed). The theme's stylesheets still draw a few icons
  with FontAwesome's font (admonition titles, breadcrumbs, external links): its fonts are cut
  down to the glyphs the stylesheets name (the solid font: 156 kB to a few kB), as WOFF.
- Sphinx's search scripts and the whole search index (33 kB compressed), which pydata-sphinx-theme
  loads on every page for its search-as-you-type option, are left to the search page while that
  option is off (it is: the search button opens search.html).
- No script blocks rendering: documentation_options.js (a few lines that inline scripts read) is
  inlined, every other script in <head> gets ``defer`` (deferred scripts keep their order).
- Every <img> gets its width and height (from the file), so nothing shifts while it loads; all
  but the logos and the page's first figure load lazily. Each figure (a PNG from matplotlib) is
  also written as lossless WebP, a third of the bytes, which browsers pick through <picture>;
  the PNG stays for those that cannot.
- The theme's script measures every code block at load to make the ones that scroll sideways tab
  stops; with the sections below the screen left unrendered (content-visibility, in
  assets/css/style.css), it measures each section's blocks as the section comes near instead
  (TAB_STOPS_SCRIPT), so opening a long chapter does not render all of it at once.
- The page's stylesheets (about ten) are joined into one, and the small deferred scripts of its
  <head> (seven) into one, each a _static/bundle-<content hash> file: fewer round trips before
  the first paint on a phone's network (bundle_stylesheets, bundle_scripts).
- The page registers the service worker (sw.js, written here): it precaches the pages, figures,
  styles, scripts and math fonts of this build, under a cache name made from a hash of their
  content, so a new publish installs a new cache and deletes the old one. Scope: the folder of
  the book (./ of its root page), so each published edition keeps its own cache.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
import struct
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

DESCRIPTION_CHARS = 160
SERVICE_WORKER = "sw.js"
# Never precached: the playground's scripts, runtime and model (14 + 4 MB, fetched by that page
# only, which needs the network to start), source maps, the downloadable sources and notebooks,
# the slide decks and their MathJax, and the files a page's bundles join (see _rewrite_pages).
NOT_PRECACHED = ("_static/onnxruntime-web/", "_static/playground", "_sources/", "notebooks/", "slides/",
                 "_static/mathjax/",  # the decks' (the pages' math is typeset at build time)
                 "_static/locales/", "_static/vendor/fontawesome/", "_static/scripts/fontawesome.js", ".map",
                 ".LICENSE.txt", "reports/", "claims.json", "objects.inv", ".ttf", ".doctrees", ".buildinfo",
                 "_static/reveal.js/", "_static/slides.css", "webpack-macros.html", "README.md", "LICENSE")
PREFIXES = {"fa-solid": "fas", "fas": "fas", "fa-regular": "far", "far": "far", "fa-brands": "fab", "fab": "fab"}
KEEP_ICON_RULES = {"xmark"}  # added by pydata-sphinx-theme's script (a dismiss button)
THEME_CSS = "_static/styles/pydata-sphinx-theme.css"
THEME_JS = "_static/scripts/pydata-sphinx-theme.js"
# pydata-sphinx-theme makes every code block and output that scrolls sideways a tab stop (so a
# keyboard can scroll it) by measuring each one when the page has loaded (here display math too). With the off-screen
# sections left unrendered (content-visibility in assets/css/style.css), measuring those would
# render the whole page at once, in tasks of 0.1 to 0.4 s on a phone. So the blocks of a section
# are measured when the section comes within a screen of the viewport (an IntersectionObserver,
# which reads no layout itself), and until then they are tab stops, as a block that scrolls must
# be; blocks outside the sections are measured at once, as the theme does.
# <html data-tab-stops="ready"> once every block has its tab stop.
TAB_STOPS_LOOP = ".forEach(e=>{e.tabIndex=e.scrollWidth>e.clientWidth||e.scrollHeight>e.clientHeight?0:-1})"
TAB_STOPS_QUERY = 'document.querySelectorAll(["pre",'
TAB_STOPS_SCRIPT = """/* tinyformer (_ext/book_speed.py): the theme's tab stops, without rendering off-screen sections */
window.tinyformerTabStops = function (elements) {
  const self = window.tinyformerTabStops;
  if (self.observer) self.observer.disconnect();  // called again on resize and on changes to the page
  // Every read before any write: a tab index written between two reads makes the next read
  // recompute the page's style.
  const measure = (blocks) => blocks.map((e) => [e, e.scrollWidth > e.clientWidth || e.scrollHeight > e.clientHeight])
    .forEach(([e, scrolls]) => { e.tabIndex = scrolls ? 0 : -1; });
  const sections = new Map(), outside = [];
  // display math scrolls sideways on a narrow screen too (.katex-display in assets/css/style.css)
  for (const e of [...elements, ...document.querySelectorAll(".bd-article .katex-display")]) {
    const section = e.closest(".bd-article > section > section");
    if (!section) { outside.push(e); continue; }
    if (!sections.has(section)) sections.set(section, []);
    sections.get(section).push(e);
  }
  measure(outside);
  for (const blocks of sections.values()) blocks.forEach((e) => { e.tabIndex = 0; });
  self.observer = new IntersectionObserver((entries) => {
    const near = entries.filter((entry) => entry.isIntersecting).map((entry) => entry.target);
    near.forEach((section) => self.observer.unobserve(section));
    measure(near.flatMap((section) => sections.get(section)));
  }, {rootMargin: "100% 0px"});
  sections.forEach((_, section) => self.observer.observe(section));
  document.documentElement.dataset.tabStops = "ready";
};
"""
FONTS = "_static/vendor/fontawesome/webfonts"
SKIP_DIRS = ("_static", "_sources", "_images", "slides", "notebooks", "reports")


# ---------------------------------------------------------------- while writing each page

_TEX_SYMBOLS = {"top": "ᵀ", "tau": "τ", "theta": "θ", "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ",
                "epsilon": "ε", "eta": "η", "lambda": "λ", "mu": "μ", "pi": "π", "sigma": "σ", "omega": "ω",
                "varphi": "φ", "phi": "φ", "Phi": "Φ", "cdot": "·", "times": "×", "le": "≤", "ge": "≥",
                "approx": "≈", "to": "→", "in": "∈", "infty": "∞", "ne": "≠", "neq": "≠", "odot": "⊙",
                "leftarrow": "←", "dots": "…", "pm": "±", "quad": " ", "qquad": " "}


def plain_math(tex: str) -> str:
    """A formula as plain text for a search result's snippet: QK^\\top/\\sqrt{d_{head}} -> QKᵀ/√d_head."""
    text = re.sub(r"\^\\top\b", "ᵀ", tex)
    text = re.sub(r"\\(?:text|mathrm|mathbf|operatorname)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"([_^])\{([^{}]*)\}", lambda m: m.group(1) + (m.group(2) if m.group(2).isalnum() else f"({m.group(2)})"), text)
    text = re.sub(r"\\sqrt\{([^{}]*)\}", lambda m: "√" + (m.group(1) if len(m.group(1)) <= 1 or "_" in m.group(1) else f"({m.group(1)})"), text)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: _TEX_SYMBOLS.get(m.group(1), m.group(1)), text)
    return text.replace("{", "").replace("}", "").replace("\\", "")


def _plain_text(node) -> str:
    """A node's text with its formulas written as plain text (plain_math)."""
    if isinstance(node, (nodes.math, nodes.math_block)):
        return plain_math(node.astext())
    if isinstance(node, nodes.Text):
        return node.astext()
    return "".join(_plain_text(child) for child in node.children)


def page_description(doctree) -> str:
    """One or two sentences for search results: the learning objectives, else the first paragraph."""
    if doctree is None:
        return ""
    text = ""
    for admonition in doctree.findall(nodes.admonition):
        if "objectives" in admonition.get("classes", []):
            items = [" ".join(_plain_text(i).split()) for i in admonition.findall(nodes.list_item)]
            items = [item.rstrip(".") for item in items]
            # one sentence: "Turn text into ids; train BPE by hand; ..."
            items[1:] = [i[0].lower() + i[1:] if i[1:2].islower() else i for i in items[1:]]
            text = "; ".join(items) + "."
            break
    if not text:  # the first paragraph of prose (not in a table, a list or an aside)
        for paragraph in doctree.findall(nodes.paragraph):
            if isinstance(paragraph.parent, nodes.section) and len(paragraph.astext()) > 60:
                text = " ".join(_plain_text(paragraph).split())
                break
    if len(text) > DESCRIPTION_CHARS:
        text = text[:DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text


def _page_context(app, pagename, templatename, context, doctree):
    title = html.unescape(re.sub(r"<[^>]+>", "", context.get("title") or "")) or pagename.capitalize()
    book = context.get("docstitle") or "tinyformer"
    description = page_description(doctree) or \
        f"{title}: a page of {book}, a book that builds a Transformer language model from scratch in PyTorch."
    context["metatags"] = context.get("metatags", "") + \
        f'\n    <meta name="description" content="{html.escape(description)}" />'


# ---------------------------------------------------------------- after the build: icons

@functools.lru_cache(maxsize=1)
def fontawesome_icons() -> dict[tuple[str, str], tuple[int, int, str]]:
    """{(prefix, name): (width, height, path)} from the theme's FontAwesome script, whose packs
    are ``var p={name:[w,h,[aliases],"unicode","path"],...}`` each followed by ``d("fas",p)``."""
    import pydata_sphinx_theme

    script = Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / "static" / "scripts" / "fontawesome.js"
    source = script.read_text(encoding="utf-8")
    icons = {}
    entry = re.compile(r'(?:"([\w-]+)"|([\w]+)):\[(\d+),(\d+),\[([^\]]*)\],"[^"]*","([^"]+)"\]')
    for pack in re.finditer(r'var p=\{(.*?)\};.*?d\("(fa[srb])",p\)', source, re.S):
        body, prefix = pack.group(1), pack.group(2)
        for m in entry.finditer(body):
            name = m.group(1) or m.group(2)
            icon = (int(m.group(3)), int(m.group(4)), m.group(6))
            icons[(prefix, name)] = icon
            for alias in re.findall(r'"([\w-]+)"', m.group(5)):
                icons.setdefault((prefix, alias), icon)
    if not icons:
        logger.warning(f"book_speed: no icons found in {script}; the theme's icons stay on its script")
    return icons


_ATTRS = re.compile(r'([\w:-]+)(?:="([^"]*)")?')
_ICON = re.compile(r'<i\s([^>]*\bclass="[^"]*\bfa[a-z-]*[^"]*"[^>]*)>\s*</i>')


def inline_icon(match: re.Match, seen: set[str] | None = None) -> str:
    attrs = dict((k, v) for k, v in _ATTRS.findall(match.group(1)))
    classes = attrs.pop("class", "").split()
    prefix = next((PREFIXES[c] for c in classes if c in PREFIXES), "fas")
    names = [c[3:] for c in classes if c.startswith("fa-") and c not in PREFIXES]
    if seen is not None:
        seen.update(names)
    icon = next(((n, fontawesome_icons()[(prefix, n)]) for n in names if (prefix, n) in fontawesome_icons()), None)
    if icon is None:
        return match.group(0)  # unknown: left to the icon font
    name, (width, height, path) = icon
    kept = [c for c in classes if c not in PREFIXES and c != f"fa-{name}"]
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items() if k not in ("aria-hidden", "focusable"))
    return (f'<svg class="{" ".join([*kept, "svg-inline--fa", f"tf-icon-{name}"])}"{extra} aria-hidden="true" '
            f'focusable="false" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}">'
            f'<path fill="currentColor" d="{path}"/></svg>')


_ICON_RULE = re.compile(r'((?:\.fa-[a-z0-9-]+:(?:before|after),?)+)\{content:"[^"]*"\}')


def subset_icon_rules(css: str, keep: set[str]) -> str:
    """FontAwesome's stylesheet without the ``.fa-NAME:before{content:...}`` rules of icons no page uses."""
    def one(match: re.Match) -> str:
        names = set(re.findall(r"\.fa-([a-z0-9-]+):", match.group(1)))
        return match.group(0) if names & keep else ""

    return _ICON_RULE.sub(one, css)


_FONT_SOURCE = re.compile(r'url\(\.\./vendor/fontawesome/webfonts/(fa-[a-z]+-\d+)\.woff2\) format\("woff2"\),'
                          r'url\(\.\./vendor/fontawesome/webfonts/\1\.ttf\) format\("truetype"\)')


def subset_icon_fonts(css: str, fonts: Path) -> str:
    """Each FontAwesome font the stylesheet declares, cut down to the code points it names
    (``content:"\\f107"`` and the ``--pst-icon-*`` variables), written as ``<font>.subset.woff``
    (from the TrueType copy: reading WOFF2 would need brotli), and the stylesheet pointed at it."""
    from fontTools import subset

    codes = sorted({int(c, 16) for c in re.findall(r'\\([ef][0-9a-f]{3})(?![0-9a-f])', css)})

    def one(match: re.Match) -> str:
        name = match.group(1)
        source, target = fonts / f"{name}.ttf", fonts / f"{name}.subset.woff"
        if not source.exists():
            return match.group(0)
        options = subset.Options()
        options.flavor = "woff"
        options.layout_features = []
        font = subset.load_font(str(source), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=codes)
        subsetter.subset(font)
        subset.save_font(font, str(target), options)
        return f'url(../vendor/fontawesome/webfonts/{name}.subset.woff) format("woff")'

    return _FONT_SOURCE.sub(one, css)


# ---------------------------------------------------------------- after the build: scripts

_FONTAWESOME_SCRIPT = re.compile(r'\s*<!-- So that users can add custom icons -->|\s*<script [^>]*src="[^"]*scripts/fontawesome\.js[^"]*"></script>')
_SEARCH_SCRIPTS = re.compile(r'\s*<script [^>]*src="[^"]*(?:searchtools\.js|language_data\.js|searchindex\.js)[^"]*"></script>')
_SCRIPT = re.compile(r'<script\b([^>]*)\bsrc="([^"]+)"([^>]*)></script>')


def defer_scripts(head: str, folder: Path) -> str:
    def one(match: re.Match) -> str:
        before, src, after = match.groups()
        attrs = before + after
        if "documentation_options.js" in src:  # read by inline scripts: inline it (a few hundred bytes)
            path = folder / src.split("?")[0]
            if path.exists():
                return f"<script>{path.read_text(encoding='utf-8').strip()}</script>"
        if re.search(r'\b(defer|async)\b|type="module"', attrs):
            return match.group(0)
        return f'<script defer{before}src="{src}"{after}></script>'

    return _SCRIPT.sub(one, head)


# ---------------------------------------------------------------- after the build: one stylesheet

# A page names about ten stylesheets (Sphinx's, the theme's, each extension's, the site's): each
# blocks the first paint, and on a phone's network every request costs a round trip. They are
# joined, in the page's order, into one file per set of stylesheets (a page with math also has
# KaTeX's): _static/bundle-<hash of the content>.css, with @import inlined and url()s rewritten
# for the bundle's folder. The link keeps the list it was made from (data-stylesheets), so a
# later build rejoins the current files: a stylesheet edited since never goes stale in a bundle.
BUNDLE_DIR = "_static"
_STYLESHEET = re.compile(r'[ \t]*<link\b(?=[^>]*\brel="stylesheet")(?![^>]*\bmedia="print")[^>]*>\n?')
_BUNDLE = re.compile(r'<link rel="stylesheet" href="[^"]*bundle-[0-9a-f]+\.css" data-stylesheets="([^"]*)" />')
_IMPORT = re.compile(r'@import\s+(?:url\()?["\']?([^"\')]+)["\']?\)?\s*;')
_URL = re.compile(r'url\(\s*(["\']?)([^)"\']+)\1\s*\)')
_SOURCE_MAP = re.compile(r'/\*#\s*sourceMappingURL=[^*]*\*/')
_SOURCE_MAP_JS = re.compile(r'^//# sourceMappingURL=.*$', re.M)
REMOTE = ("http:", "https:", "//", "data:")


def _css_text(path: Path, outdir: Path, seen: set[Path]) -> str:
    """A stylesheet with its @imports inlined and its url()s relative to the bundle's folder."""
    if path in seen:
        return ""
    seen.add(path)
    css = _SOURCE_MAP.sub("", path.read_text(encoding="utf-8")).replace('@charset "UTF-8";', "")

    def imported(match: re.Match) -> str:
        return _css_text((path.parent / match.group(1)).resolve(), outdir, seen)

    def url(match: re.Match) -> str:
        quote, target = match.groups()
        if target.startswith((*REMOTE, "#", "/")):
            return match.group(0)
        file = target.split("?")[0].split("#")[0]
        rel = os.path.relpath((path.parent / file).resolve(), outdir / BUNDLE_DIR)
        return f"url({quote}{Path(rel).as_posix()}{target[len(file):]}{quote})"

    return _URL.sub(url, _IMPORT.sub(imported, css))



def _gather(pattern: re.Pattern, text: str, url_of, folder: Path, outdir: Path, placeholder: str,
            apart: tuple[str, ...] = ()) -> tuple[str, list[str], list[str]]:
    """The site's files that the tags matching ``pattern`` name (in order, as paths in the site),
    the text with the first of those tags replaced by ``placeholder`` and the others removed
    (tags naming other sites, or a file named in ``apart``, stay as they are), and the tags taken."""
    names: list[str] = []
    tags: list[str] = []

    def replace(match: re.Match) -> str:
        target = html.unescape(url_of(match) or "").split("?")[0]
        if not target or target.startswith(REMOTE) or Path(target).name in apart:
            return match.group(0)
        names.append((folder / target).resolve().relative_to(outdir).as_posix())
        tags.append(match.group(0))
        return f"    {placeholder}\n" if len(names) == 1 else ""

    return pattern.sub(replace, text), names, tags


def _bundle(names: list[str], content_of, suffix: str, outdir: Path, written: dict[str, str]) -> str:
    """The bundle of these files (each headed by its name), written once per build under a hash of
    its content: _static/bundle-<hash>.<suffix>, as a path in the site."""
    key = " ".join(names)
    if key not in written:
        content = "\n".join(f"/* {name} */\n" + content_of(name) for name in names)
        written[key] = f"{BUNDLE_DIR}/bundle-{hashlib.sha256(content.encode()).hexdigest()[:12]}.{suffix}"
        (outdir / written[key]).write_text(content, encoding="utf-8")
    return written[key]


def _href(match: re.Match) -> str | None:
    found = re.search(r'\bhref="([^"]+)"', match.group(0))
    return found.group(1) if found else None


def bundle_stylesheets(head: str, folder: Path, outdir: Path, written: dict[str, str]) -> str:
    """The page's head with its screen stylesheets replaced by one bundle (see BUNDLE_DIR)."""
    old = _BUNDLE.search(head)
    if old:
        names = html.unescape(old.group(1)).split()
        head = _BUNDLE.sub("@@BUNDLE@@", head, count=1)
    else:
        joined, names, _ = _gather(_STYLESHEET, head, _href, folder, outdir, "@@BUNDLE@@")
        if len(names) < 2:
            return head
        head = joined
    seen: set[Path] = set()  # a file @imported twice is joined once
    bundle = _bundle(names, lambda name: _css_text(outdir / name, outdir, seen), "css", outdir, written)
    href = os.path.relpath(outdir / bundle, folder).replace(os.sep, "/")
    return head.replace("@@BUNDLE@@", f'<link rel="stylesheet" href="{href}" data-stylesheets="{html.escape(" ".join(names))}" />', 1)


# The small deferred scripts in <head> (Sphinx's, the extensions': seven files) are joined the
# same way, in the page's order, into one deferred _static/bundle-<hash>.js: deferred scripts run
# in document order once the page is parsed, so one file in their place runs the same code in the
# same order, in one request. A script's data- attributes move to the bundle's tag (design-tabs.js
# reads its own from document.currentScript); scripts that are async, modules or not ours stay.
# The theme's two scripts at the end of <body> (preloaded from <head>) stay apart: joined to the
# rest, their evaluation made one task long enough to block a phone's main thread.
# Scripts that stay apart: sphinx_highlight.js asks `typeof Search` to learn whether it is on the
# search page, and in one file with searchtools.js that would meet searchtools' `const Search`
# before its declaration and throw (each classic script declares its own top-level names).
SCRIPTS_APART = ("searchtools.js", "language_data.js", "searchindex.js")
_DEFERRED = re.compile(r'[ \t]*<script\b(?=[^>]*\bdefer\b)(?![^>]*\basync\b)(?![^>]*type="module")[^>]*\bsrc="([^"]+)"[^>]*></script>\n?')
_SCRIPT_BUNDLE = re.compile(r'<script defer src="[^"]*bundle-[0-9a-f]+\.js" data-scripts="([^"]*)"([^>]*)></script>')
_DATA_ATTR = re.compile(r'\s(data-(?!scripts)[a-z0-9-]+="[^"]*")')
_SCRIPT_PRELOAD = re.compile(r'[ \t]*<link rel="preload" as="script" href="([^"]+)" />\n?')


def bundle_scripts(text: str, folder: Path, outdir: Path, written: dict[str, str]) -> str:
    """The page with its deferred scripts replaced by one deferred bundle (see _DEFERRED)."""
    old = _SCRIPT_BUNDLE.search(text)
    if old:
        names, extra = html.unescape(old.group(1)).split(), old.group(2)
        text = _SCRIPT_BUNDLE.sub("@@SCRIPTS@@", text, count=1)
    else:
        joined, names, tags = _gather(_DEFERRED, text, lambda m: m.group(1), folder, outdir, "@@SCRIPTS@@", SCRIPTS_APART)
        if len(names) < 2:
            return text
        attrs = [a for tag in tags for a in _DATA_ATTR.findall(tag)]
        extra = "".join(f" {a}" for a in dict.fromkeys(attrs))
        text = joined

        def preload(match: re.Match) -> str:  # a preload of a joined script would fetch it twice
            target = (folder / html.unescape(match.group(1)).split("?")[0]).resolve()
            return "" if target.is_relative_to(outdir) and target.relative_to(outdir).as_posix() in names else match.group(0)

        text = _SCRIPT_PRELOAD.sub(preload, text)
    bundle = _bundle(names, lambda name: _SOURCE_MAP_JS.sub("", (outdir / name).read_text(encoding="utf-8")).rstrip() + "\n;",
                     "js", outdir, written)
    src = os.path.relpath(outdir / bundle, folder).replace(os.sep, "/")
    return text.replace("@@SCRIPTS@@", f'<script defer src="{src}" data-scripts="{html.escape(" ".join(names))}"{extra}></script>', 1)



# ---------------------------------------------------------------- after the build: images

def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) in CSS pixels: PNG from its header, SVG from its width/height or viewBox."""
    try:
        data = path.read_bytes()[:4096]
    except OSError:
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", data[16:24])
    if path.suffix == ".svg":
        text = data.decode("utf-8", "replace")
        svg = re.search(r"<svg\b[^>]*>", text, re.S)
        if not svg:
            return None
        tag = svg.group(0)
        w, h = (re.search(rf'\b{a}="([\d.]+)(px)?"', tag) for a in ("width", "height"))
        if w and h:
            return round(float(w.group(1))), round(float(h.group(1)))
        box = re.search(r'viewBox="[\d.-]+[ ,]+[\d.-]+[ ,]+([\d.]+)[ ,]+([\d.]+)"', tag)
        if box:
            return round(float(box.group(1))), round(float(box.group(2)))
        return None
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    except Exception:
        return None


def write_webp(images: Path) -> None:
    """A lossless WebP beside each figure's PNG (names are content hashes: made once)."""
    from PIL import Image

    for png in sorted(images.glob("*.png")):
        webp = png.with_suffix(".webp")
        if not webp.exists():
            with Image.open(png) as image:
                image.save(webp, "WEBP", lossless=True, method=4)


def size_images(body: str, folder: Path) -> str:
    first_figure = [True]

    def one(match: re.Match) -> str:
        tag = match.group(0)
        picture = ""
        src = re.search(r'\bsrc="(_images/[^"]+)\.png"', tag)
        if src and (folder / f"{src.group(1)}.webp").exists() and \
                not body[max(0, match.start() - 120):match.start()].endswith('type="image/webp" />'):
            picture = f'<picture><source srcset="{src.group(1)}.webp" type="image/webp" />'
        src = re.search(r'\bsrc="([^"]+)"', tag)
        if not src or src.group(1).startswith(("data:", "http:", "https:")):
            return tag
        add = []
        if " width=" not in tag and " height=" not in tag:
            size = image_size(folder / html.unescape(src.group(1)).split("?")[0])
            if size:
                add.append(f'width="{size[0]}" height="{size[1]}"')
        eager = "logo__image" in tag or ("_images/" in src.group(1) and first_figure[0])
        if "_images/" in src.group(1):
            first_figure[0] = False
        if not eager and "loading=" not in tag:
            add.append('loading="lazy"')
        if "decoding=" not in tag:
            add.append('decoding="async"')
        if add:
            end = "/>" if tag.endswith("/>") else ">"
            tag = tag[: -len(end)].rstrip() + " " + " ".join(add) + (" />" if end == "/>" else ">")
        return f"{picture}{tag}</picture>" if picture else tag

    return re.sub(r"<img\b[^>]*>", one, body)


# ---------------------------------------------------------------- after the build: offline

REGISTER = ("<script>/* offline reading: {sw} caches this edition of the book */"
            "if ('serviceWorker' in navigator) window.addEventListener('load', () => "
            "(window.requestIdleCallback || setTimeout)(() => navigator.serviceWorker.register('{root}{sw}', "
            "{{scope: '{root}'}}).catch(() => {{}})));</script>")


def precached(outdir: Path) -> list[str]:
    files = []
    for path in sorted(outdir.rglob("*")):
        rel = path.relative_to(outdir).as_posix()
        if rel.startswith(FONTS) and rel.endswith(".subset.woff"):
            files.append(rel)  # the icons the stylesheets draw (the full fonts are not)
            continue
        if rel.startswith("_images/") and path.suffix == ".png" and path.with_suffix(".webp").exists():
            continue  # browsers that read WebP (all that run service workers) never ask for the PNG
        if path.is_file() and rel != SERVICE_WORKER and not any(skip in rel or rel.startswith(skip) for skip in NOT_PRECACHED):
            files.append(rel)
    return files


def lazy_tab_stops(script: str) -> str:
    """The theme's script with its tab stops set without rendering off-screen sections (see TAB_STOPS_LOOP)."""
    if script.startswith(TAB_STOPS_SCRIPT):
        return script  # an earlier build's copy
    if script.count(TAB_STOPS_LOOP) != 1 or script.count(TAB_STOPS_QUERY) != 1:
        raise ValueError("the theme's tab-stop loop is not where pydata-sphinx-theme 0.17 has it")
    script = script.replace(TAB_STOPS_QUERY, "window.tinyformerTabStops(" + TAB_STOPS_QUERY).replace(TAB_STOPS_LOOP, ")")
    return TAB_STOPS_SCRIPT + script


def service_worker(files: list[str], build_id: str) -> str:
    template = (Path(__file__).resolve().parent.parent / "assets" / "offline" / "sw.js").read_text(encoding="utf-8")
    return (template.replace("__BUILD_ID__", build_id)
            .replace("__FILES__", json.dumps(files, indent=0).replace("\n", "")))


def _rewrite_pages(app, exception):
    if exception is not None or app.builder.name != "html":
        return
    outdir = Path(app.outdir)
    if (outdir / "_images").is_dir():
        write_webp(outdir / "_images")
    options = getattr(getattr(app, "config", None), "html_theme_options", {}) or {}
    search_as_you_type = options.get("search_as_you_type", False)
    pages = [p for p in outdir.rglob("*.html") if p.relative_to(outdir).parts[0] not in SKIP_DIRS]
    icons = set(KEEP_ICON_RULES)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if 'http-equiv="refresh"' in text:  # index.html: a redirect
            continue
        folder = page.parent
        depth = len(page.relative_to(outdir).parts) - 1
        head_end = text.find("</head>")
        head, body = text[:head_end], text[head_end:]
        head = _FONTAWESOME_SCRIPT.sub("", head)
        if not search_as_you_type and page.name != "search.html":
            head = _SEARCH_SCRIPTS.sub("", head)
        head = defer_scripts(head, folder)
        icons.update(re.findall(r'\btf-icon-([a-z0-9-]+)', body))  # inlined by an earlier build
        body = size_images(_ICON.sub(lambda m: inline_icon(m, icons), body), folder)
        if SERVICE_WORKER not in body:
            body = body.replace("</body>", REGISTER.format(root="../" * depth or "./", sw=SERVICE_WORKER) + "\n</body>", 1)
        new = head + body
        if new != text:
            page.write_text(new, encoding="utf-8")
    theme_css = outdir / THEME_CSS
    if theme_css.exists():
        css = theme_css.read_text(encoding="utf-8")
        subset = subset_icon_fonts(subset_icon_rules(css, icons), outdir / FONTS)
        if subset != css:
            theme_css.write_text(subset, encoding="utf-8")
    theme_js = outdir / THEME_JS
    if theme_js.exists():
        try:
            theme_js.write_text(lazy_tab_stops(theme_js.read_text(encoding="utf-8")), encoding="utf-8")
        except ValueError as error:
            logger.warning(f"book_speed: {error}; its measurements stay in one task at load")
    bundles: dict[str, str] = {}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if 'http-equiv="refresh"' in text:
            continue
        head_end = text.find("</head>")
        head = bundle_scripts(bundle_stylesheets(text[:head_end], page.parent, outdir, bundles), page.parent, outdir, bundles)
        new = head + text[head_end:]
        if new != text:
            page.write_text(new, encoding="utf-8")
    for stale in [*(outdir / BUNDLE_DIR).glob("bundle-*.css"), *(outdir / BUNDLE_DIR).glob("bundle-*.js")]:
        if f"{BUNDLE_DIR}/{stale.name}" not in bundles.values():
            stale.unlink()
    joined = {name for key in bundles for name in key.split()}  # no page asks for these alone any more
    files = [f for f in precached(outdir) if f not in joined]
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + (outdir / rel).read_bytes())
    build_id = digest.hexdigest()[:16]
    (outdir / SERVICE_WORKER).write_text(service_worker(files, build_id), encoding="utf-8")
    size = sum((outdir / f).stat().st_size for f in files)
    logger.info(f"offline: {SERVICE_WORKER} precaches {len(files)} files ({size / 1e6:.1f} MB), build {build_id}")


def setup(app):
    app.connect("html-page-context", _page_context, priority=600)
    # after the other build-finished steps (claims, decks, the playground's export)
    app.connect("build-finished", _rewrite_pages, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
