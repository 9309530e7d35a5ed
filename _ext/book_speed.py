"""Fast on a phone and readable offline (issue 23): what the build does to each HTML page.

While a page is written (html-page-context): a meta description, from the chapter's "Learning
objectives" (else its first paragraph). (MathJax is already loaded, deferred, only by pages with
math: Sphinx's own rule, which tests/test_site_budgets.py holds.)

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
- The page registers the service worker (sw.js, written here): it precaches the pages, figures,
  styles, scripts and MathJax of this build, under a cache name made from a hash of their
  content, so a new publish installs a new cache and deletes the old one. Scope: the folder of
  the book (./ of its root page), so each published edition keeps its own cache.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
import struct
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

DESCRIPTION_CHARS = 160
SERVICE_WORKER = "sw.js"
# Never precached: the playground's scripts, runtime and model (14 + 4 MB, fetched by that page
# only, which needs the network to start),
# source maps, the downloadable sources and notebooks, and the slide decks.
NOT_PRECACHED = ("_static/onnxruntime-web/", "_static/playground", "_sources/", "notebooks/", "slides/",
                 "_static/locales/", "_static/vendor/fontawesome/", "_static/scripts/fontawesome.js", ".map",
                 ".LICENSE.txt", "reports/", "claims.json", "objects.inv", ".ttf", ".doctrees", ".buildinfo",
                 "_static/reveal.js/", "_static/slides.css", "webpack-macros.html", "README.md", "LICENSE")
PREFIXES = {"fa-solid": "fas", "fas": "fas", "fa-regular": "far", "far": "far", "fa-brands": "fab", "fab": "fab"}
KEEP_ICON_RULES = {"xmark"}  # added by pydata-sphinx-theme's script (a dismiss button)
THEME_CSS = "_static/styles/pydata-sphinx-theme.css"
FONTS = "_static/vendor/fontawesome/webfonts"
SKIP_DIRS = ("_static", "_sources", "_images", "slides", "notebooks", "reports")


# ---------------------------------------------------------------- while writing each page

def page_description(doctree) -> str:
    """One or two sentences for search results: the learning objectives, else the first paragraph."""
    if doctree is None:
        return ""
    text = ""
    for admonition in doctree.findall(nodes.admonition):
        if "objectives" in admonition.get("classes", []):
            items = [" ".join(i.astext().split()) for i in admonition.findall(nodes.list_item)]
            items = [item.rstrip(".") for item in items]
            # one sentence: "Turn text into ids; train BPE by hand; ..."
            items[1:] = [i[0].lower() + i[1:] if i[1:2].islower() else i for i in items[1:]]
            text = "; ".join(items) + "."
            break
    if not text:  # the first paragraph of prose (not in a table, a list or an aside)
        for paragraph in doctree.findall(nodes.paragraph):
            if isinstance(paragraph.parent, nodes.section) and len(paragraph.astext()) > 60:
                text = " ".join(paragraph.astext().split())
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
    files = precached(outdir)
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
