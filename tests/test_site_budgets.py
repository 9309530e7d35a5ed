"""What a phone downloads to show each page, measured on the built site without a browser.

Issue 23's budgets that do not depend on timing, so CI can hold them without flakiness (the
Lighthouse scores, which do, are measured by benchmarks/bench_site.py): the bytes and requests
of a first visit before figures (the page's HTML and the styles, scripts and fonts it names,
gzip-compressed as GitHub Pages serves them), no script that blocks rendering, every image
with its size (and lazy below the fold), a meta description on every page, MathJax only where
there is math, the theme's icons without FontAwesome's script, and the service worker.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
from pathlib import Path

import pytest

from site_build import HTML, build_site, toc_files

pytestmark = [pytest.mark.book]

FIRST_VISIT_BYTES = 500_000   # gzip bytes before figures (issue 23)
FIRST_VISIT_REQUESTS = 26     # before figures and MathJax's fonts (the playground's script and styles)
PAGES = toc_files()
MATHJAX = "mathjax/tex-chtml.js"
# The MathJax fonts a page of this book's math loads (seen in Chromium): counted on pages with math.
MATHJAX_FONTS = ("MathJax_Zero.woff", "MathJax_Main-Regular.woff", "MathJax_Math-Italic.woff", "MathJax_Size1-Regular.woff",  # seen in Chromium
                 "MathJax_Calligraphic-Regular.woff")


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


def first_visit(folder: Path, page: str) -> dict[str, int]:
    """{file: gzip bytes} of what the page loads before any figure: the HTML, its stylesheets (not
    print), scripts, preloads and icons, the icon font the theme's stylesheet draws admonition
    titles with, and MathJax's fonts where it loads MathJax."""
    text = (folder / f"{page}.html").read_text(encoding="utf-8")
    wanted = [f"{page}.html"]
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", text):
        if re.search(r'\bmedia="print"', tag) or re.search(r'\brel="(?:prev|next|index|search|canonical)"', tag):
            continue
        src = re.search(r'\b(?:src|href)="([^"]+)"', tag)
        local = _local(src.group(1)) if src else None
        if local and local not in wanted:
            wanted.append(local)
    for stylesheet in [w for w in wanted if w.endswith("pydata-sphinx-theme.css")]:
        font = _icon_font(folder, stylesheet)
        if font:
            wanted.append(str(Path(font)).replace("_static/styles/../", "_static/"))
    if any(MATHJAX in w for w in wanted):
        wanted += [f"_static/mathjax/output/chtml/fonts/woff-v2/{name}" for name in MATHJAX_FONTS]
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
        assert len(sizes) <= FIRST_VISIT_REQUESTS + len(MATHJAX_FONTS), f"{page}: {len(sizes)} requests: {list(sizes)}"
    print({p: f"{b / 1000:.0f} kB, {n} requests" for p, (b, n) in report.items()})


def test_icon_fonts_hold_only_the_icons_the_stylesheets_draw(site):
    css = (site / "_static/styles/pydata-sphinx-theme.css").read_text(encoding="utf-8")
    fonts = re.findall(r"url\((\.\./vendor/fontawesome/webfonts/[^)]+)\)", css)
    assert fonts and all(f.endswith(".subset.woff") for f in fonts), fonts
    for font in fonts:
        size = (site / "_static/styles" / font).resolve().stat().st_size
        assert size <= 10_000, f"{font}: {size:,} bytes"


def test_no_script_blocks_rendering(site):
    for page in PAGES:
        head = _head((site / f"{page}.html").read_text(encoding="utf-8"))
        blocking = [tag for tag in re.findall(r"<script\b[^>]*\bsrc=[^>]*>", head)
                    if not re.search(r'\b(defer|async)\b|type="module"', tag)]
        assert not blocking, f"{page}: render-blocking scripts in <head>: {blocking}"


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
        seen[found[0]] = page
    tokens = html.unescape(next(d for d, p in seen.items() if p == "tokens"))
    assert tokens.startswith("Turn text into integer ids two ways"), "a chapter's description is its objectives"


def test_mathjax_only_on_pages_with_math(site):
    with_math = []
    for page in [*PAGES, "search", "genindex"]:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        body = text[text.index("<body"):]
        has_math = 'class="math' in body
        assert (MATHJAX in _head(text)) == has_math, f"{page}: math {has_math}, MathJax loaded {not has_math}"
        with_math.append(has_math)
    assert any(with_math) and not all(with_math)


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
    assert any(f.startswith("_images/") for f in files) and f"_static/{MATHJAX}" in files
    assert not [f for f in files if "onnxruntime-web" in f or f.startswith(("_static/playground/", "slides/"))]
