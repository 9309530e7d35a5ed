"""What a phone downloads to show each page, measured on the built site without a browser.

Issue 23's budgets that do not depend on timing, so CI can hold them without flakiness (the
Lighthouse scores, which do, are measured by benchmarks/bench_site.py): the bytes and requests
of a first visit before figures (the page's HTML and the styles, scripts and fonts it names,
gzip-compressed as GitHub Pages serves them), one stylesheet and no script that blocks
rendering, every image with its size (and lazy below the fold), a meta description on every
page, math typeset at build time (no math script; KaTeX's stylesheet only where there is math),
the theme's icons without FontAwesome's script, and the service worker.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
from pathlib import Path

import pytest

from site_build import HTML, build_site, toc_files

pytestmark = [pytest.mark.book]

FIRST_VISIT_BYTES = 500_000   # gzip bytes before figures (issue 23)
FIRST_VISIT_REQUESTS = 9      # before figures and math fonts: the page, its stylesheet, scripts, preloads, icon font
PAGES = toc_files()
# The KaTeX fonts a formula's markup asks for, by the classes KaTeX writes (its katex.min.css):
# counted on pages with math, beside the two the page preloads.
KATEX_FONTS = {"mathbf": "KaTeX_Main-Bold", "textbf": "KaTeX_Main-Bold", "boldsymbol": "KaTeX_Math-BoldItalic",
               "mathbb": "KaTeX_AMS-Regular", "amsrm": "KaTeX_AMS-Regular", "mathcal": "KaTeX_Caligraphic-Regular",
               "mathit": "KaTeX_Main-Italic", "textit": "KaTeX_Main-Italic", "mathsf": "KaTeX_SansSerif-Regular",
               "mathtt": "KaTeX_Typewriter-Regular", "texttt": "KaTeX_Typewriter-Regular",
               "size1": "KaTeX_Size1-Regular", "small-op": "KaTeX_Size1-Regular", "size2": "KaTeX_Size2-Regular",
               "large-op": "KaTeX_Size2-Regular", "size3": "KaTeX_Size3-Regular", "size4": "KaTeX_Size4-Regular"}
MATH_SCRIPTS = ("mathjax", "katex.min.js", "katex.js")


@pytest.fixture(scope="module")
def site():
    result = build_site()
    assert result["returncode"] == 0, "strict build failed:\n" + result["log"][-6000:]
    return HTML


def _head(text: str) -> str:
    return text[: text.index("</head>")]


def _local(url: str) -> str | None:
    url = html.unescape(url).split("#")[0].split("?")[0]
    return None if not url or url.startswith(("http:", "https:", "data:", "//")) else url


def _icon_font(folder: Path, stylesheet: str) -> str | None:
    """The solid icon font a stylesheet declares (admonition titles are drawn with it)."""
    css = (folder / stylesheet).read_text(encoding="utf-8")
    face = re.search(r'@font-face\{[^}]*Font Awesome\\? 6 Free;[^}]*font-weight:900;[^}]*?url\(([^)]+)\)', css)
    return (Path(stylesheet).parent / face.group(1)).as_posix() if face else None


def _math_fonts(body: str) -> list[str]:
    """The KaTeX fonts, beyond the two preloaded ones, that the page's formulas ask for."""
    classes = {c for attr in re.findall(r'class="([^"]*)"', body) for c in attr.split()}
    return sorted({f"_static/katex/fonts/{font}.woff2" for cls, font in KATEX_FONTS.items() if cls in classes})


def first_visit(folder: Path, page: str) -> dict[str, int]:
    """{file: gzip bytes} of what the page loads before any figure: the HTML, its stylesheets (not
    print), scripts, preloads and icons, the icon font the theme's stylesheet draws admonition
    titles with, and the math fonts its formulas ask for."""
    text = (folder / f"{page}.html").read_text(encoding="utf-8")
    wanted = [f"{page}.html"]
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", text):
        if re.search(r'\bmedia="print"', tag) or re.search(r'\brel="(?:prev|next|index|search|canonical)"', tag):
            continue
        src = re.search(r'\b(?:src|href)="([^"]+)"', tag)
        local = _local(src.group(1)) if src else None
        if local and local not in wanted:
            wanted.append(local)
    for stylesheet in [w for w in wanted if w.endswith(".css")]:
        font = _icon_font(folder, stylesheet)
        if font:
            wanted.append(os.path.normpath(font))
    wanted += [font for font in _math_fonts(text[text.index("<body"):]) if font not in wanted]
    sizes = {}
    for name in wanted:
        data = (folder / name).read_bytes()
        compressed = name.endswith((".woff", ".woff2", ".png", ".jpg", ".webp"))  # served as they are
        sizes[name] = len(data) if compressed else len(gzip.compress(data, 6))
    return sizes


def test_first_visit_fits_the_budget(site):
    report = {}
    for page in PAGES:
        sizes = first_visit(site, page)
        report[page] = (sum(sizes.values()), len(sizes))
        assert sum(sizes.values()) <= FIRST_VISIT_BYTES, \
            f"{page}: {sum(sizes.values()) / 1000:.0f} kB before figures, largest " \
            f"{sorted(sizes.items(), key=lambda kv: -kv[1])[:3]}"
        fonts = [n for n in sizes if n.startswith("_static/katex/fonts/")]
        assert len(sizes) - len(fonts) <= FIRST_VISIT_REQUESTS, f"{page}: {len(sizes)} requests: {list(sizes)}"
    print({p: f"{b / 1000:.0f} kB, {n} requests" for p, (b, n) in report.items()})


def test_icon_fonts_hold_only_the_icons_the_stylesheets_draw(site):
    css = (site / "_static/styles/pydata-sphinx-theme.css").read_text(encoding="utf-8")
    fonts = re.findall(r"url\((\.\./vendor/fontawesome/webfonts/[^)]+)\)", css)
    assert fonts and all(f.endswith(".subset.woff") for f in fonts), fonts
    for font in fonts:
        size = (site / "_static/styles" / font).resolve().stat().st_size
        assert size <= 10_000, f"{font}: {size:,} bytes"


def test_no_script_blocks_rendering_and_one_stylesheet(site):
    for page in PAGES:
        head = _head((site / f"{page}.html").read_text(encoding="utf-8"))
        blocking = [tag for tag in re.findall(r"<script\b[^>]*\bsrc=[^>]*>", head)
                    if not re.search(r'\b(defer|async)\b|type="module"', tag)]
        assert not blocking, f"{page}: render-blocking scripts in <head>: {blocking}"
        sheets = [tag for tag in re.findall(r"<link\b[^>]*>", head)
                  if 'rel="stylesheet"' in tag and 'media="print"' not in tag]
        assert len(sheets) == 1 and "bundle-" in sheets[0], f"{page}: {len(sheets)} stylesheets block the first paint: {sheets}"


def test_each_bundle_joins_the_current_files_it_names(site):
    """A bundle holds each file it names, in order, as the build copied it: nothing stale."""
    for page in PAGES:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        for tag, attr in ((r'<link rel="stylesheet" href="([^"]+)" data-stylesheets="([^"]*)"', "css"),
                          (r'<script defer src="([^"]+)" data-scripts="([^"]*)"', "js")):
            found = re.search(tag, text)
            assert found, f"{page}: no {attr} bundle"
            bundle = (site / found.group(1)).read_text(encoding="utf-8")
            names = html.unescape(found.group(2)).split()
            assert len(names) >= 5, f"{page}: {names}"
            positions = [bundle.index(f"/* {name} */") for name in names]
            assert positions == sorted(positions), f"{page}: {attr} bundle out of order"
            if attr == "js":  # scripts are joined unchanged (a stylesheet's url()s are rewritten for the bundle's folder)
                for name in names:
                    source = re.sub(r"^//# sourceMappingURL=.*$", "", (site / name).read_text(encoding="utf-8"), flags=re.M).rstrip()
                    assert source in bundle, f"{page}: the bundle's {name} is not the current one"


def test_every_image_has_its_size_and_figures_below_the_first_load_lazily(site):
    for page in PAGES:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        figures = 0
        for tag in re.findall(r"<img\b[^>]*>", text):
            assert re.search(r'\bwidth="\d+"', tag) and re.search(r'\bheight="\d+"', tag), f"{page}: {tag[:200]}"
            if "_images/" in tag:
                figures += 1
                if figures > 1:
                    assert 'loading="lazy"' in tag, f"{page}: figure {figures} is not lazy: {tag[:200]}"


def test_every_page_has_its_own_meta_description(site):
    seen = {}
    for page in PAGES:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        found = re.findall(r'<meta name="description" content="([^"]*)"', text)
        assert len(found) == 1 and 50 <= len(found[0]) <= 160, f"{page}: {found}"
        assert found[0] not in seen, f"{page} has the description of {seen.get(found[0])}"
        assert not re.search(r"\\[A-Za-z]|[_^]\{", found[0]), f"{page}: TeX in its description: {found[0]}"
        seen[found[0]] = page
    tokens = html.unescape(next(d for d, p in seen.items() if p == "tokens"))
    assert tokens.startswith("Turn text into integer ids two ways"), "a chapter's description is its objectives"


def test_math_is_typeset_at_build_time(site):
    """No page loads a math script; each formula is KaTeX's markup (with MathML for screen
    readers), no TeX is left for a browser to typeset, and only pages with math get KaTeX's
    stylesheet and fonts."""
    with_math = []
    for page in [*PAGES, "search", "genindex"]:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        head, body = _head(text), text[text.index("<body"):]
        scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', text) + [
            html.unescape(n) for m in re.findall(r'data-scripts="([^"]*)"', text) for n in m.split()]
        assert not [s for s in scripts if any(m in s.lower() for m in MATH_SCRIPTS)] and "window.MathJax" not in text, \
            f"{page} loads a math script"
        formulas = [f.lstrip() for f in re.findall(r'<(?:span|div) class="math notranslate nohighlight"[^>]*>(.{0,200})', body, re.S)]
        has_math = bool(formulas)
        for formula in formulas:
            assert formula.startswith(('<span class="katex">', '<span class="katex-display">', '<span class="eqno">')), \
                f"{page}: a formula not typeset: {formula[:120]}"
        assert body.count('<span class="katex-mathml"><math') == body.count('<span class="katex">'), page
        prose = re.sub(r"<(pre|code|script|annotation|style)\b.*?</\1>", "", body, flags=re.S)
        left = re.findall(r"\\\(|\\\[|\$\$", prose)
        assert not left, f"{page}: TeX left for a browser: {left[:3]}"
        assert ("_static/katex/katex.min.css" in head) == has_math, f"{page}: math {has_math}, KaTeX's stylesheet"
        assert ("KaTeX_Main-Regular.woff2" in head) == has_math, f"{page}: math {has_math}, KaTeX's font preloaded"
        with_math.append(has_math)
    assert any(with_math) and not all(with_math)
    assert not (site / "_static" / "katex" / "katex.min.js").exists(), "KaTeX's script is the build's, not the reader's"


def test_icons_are_inline_svg_not_fontawesomes_script(site):
    for page in PAGES:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        assert "fontawesome.js" not in text, page
        left = re.findall(r'<i class="[^"]*\bfa-[^"]*"', text)
        assert not left, f"{page}: icons left to FontAwesome: {left}"
    intro = (site / "intro.html").read_text(encoding="utf-8")
    for name in ("magnifying-glass", "sun", "moon", "circle-half-stroke", "github"):
        assert re.search(rf'<svg class="[^"]*tf-icon-{name}"[^>]*viewBox="0 0 \d+ \d+"><path fill="currentColor" d="M', intro), name


def test_service_worker_precaches_this_build_under_its_content_hash(site):
    worker = (site / "sw.js").read_text(encoding="utf-8")
    build_id = re.search(r'const BUILD_ID = "([0-9a-f]{16})"', worker).group(1)
    files = json.loads(re.search(r"const FILES = (\[.*?\]);", worker, re.S).group(1))
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + (site / rel).read_bytes())
    assert digest.hexdigest()[:16] == build_id, "the cache name is not the hash of what it caches"
    for page in PAGES:
        assert f"{page}.html" in files
        assert "navigator.serviceWorker.register('./sw.js', {scope: './'})" in (site / f"{page}.html").read_text(encoding="utf-8")
    assert any(f.startswith("_images/") for f in files)
    assert "_static/katex/fonts/KaTeX_Main-Regular.woff2" in files and "_static/katex/fonts/KaTeX_Size1-Regular.woff2" in files
    assert any(re.fullmatch(r"_static/bundle-[0-9a-f]+\.css", f) for f in files)
    for page in PAGES:  # what each page loads is in the cache
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        for ref in re.findall(r'(?:href|src)="(_static/bundle-[^"]+)"', text):
            assert ref in files, f"{page}: {ref} not precached"
    assert not [f for f in files if "onnxruntime-web" in f or f.startswith(("_static/playground/", "slides/", "_static/mathjax/"))]
