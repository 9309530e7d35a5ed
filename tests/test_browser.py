"""The built site in a real browser, as readers see it: Debian's Chromium driven by Playwright.

Every TOC page is loaded from a server on 127.0.0.1 at a phone (390x844) and a desktop
(1280x900) viewport. Screenshots go to artifacts/screenshots/ (not committed).
Needs /usr/bin/chromium (`apt-get install chromium`; never `playwright install`) and
axe-core (`npm install --prefix tests/.node axe-core`); .ci/run installs both. Without
them these tests are skipped, unless TINYFORMER_REQUIRE_BROWSER=1 makes that a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from site_build import HTML, ROOT, build_site, notebook_files, toc_files

pytestmark = [pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "artifacts" / "screenshots"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
THEME = {"light": {"link": (11, 102, 208)}, "dark": {"link": (108, 180, 255)}}
PAGES = toc_files()


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("TINYFORMER_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def server():
    result = build_site()
    assert result["returncode"] == 0, result["log"][-4000:]
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM.exists(), "Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield b
        b.close()


class Visit:
    """One page in one context, with everything that went wrong while loading it."""

    def __init__(self, browser, url: str, viewport: dict, scheme: str = "light"):
        self.context = browser.new_context(viewport=viewport, color_scheme=scheme)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} (HTTP {r.status})"))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")
        # the theme marks scrollable blocks as tab stops after load (book_speed.TAB_STOPS_SCRIPT)
        self.page.wait_for_function("!window.tinyformerTabStops || document.documentElement.dataset.tabStops === 'ready'",
                                    timeout=10_000)

    def close(self):
        self.context.close()


def _luminance(rgb) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg, bg) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(float(v)) for v in re.findall(r"[\d.]+", css)[:3])


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
@pytest.mark.parametrize("name", PAGES)
def test_page_as_a_reader_sees_it(server, browser, name, viewport):
    visit = Visit(browser, f"{server}{name}.html", VIEWPORTS[viewport])
    page = visit.page
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}-{viewport}.png"), full_page=True)
        assert not visit.console_errors, visit.console_errors
        assert not visit.failed, visit.failed

        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {viewport} width"

        # Figures below the fold load as the reader scrolls (loading="lazy"): load them all to check them.
        page.evaluate("Promise.all([...document.querySelectorAll('article img')].map(i => "
                      "{ i.loading = 'eager'; return i.decode().catch(() => null); }))")
        images = page.evaluate(
            """() => [...document.querySelectorAll('article img')].map(i =>
                   ({src: i.getAttribute('src'), w: i.naturalWidth, alt: (i.getAttribute('alt') || '').trim(),
                     shown: i.getBoundingClientRect().width}))"""
        )
        for img in images:
            assert img["w"] > 0, f"{name}: figure {img['src']} did not load"
            assert img["alt"], f"{name}: figure {img['src']} has no alt text"
            assert img["shown"] <= VIEWPORTS[viewport]["width"], f"{name}: {img['src']} wider than the screen"

        # Inline code wraps inside its box (a long name in an admonition was cut off at 390 px).
        clipped = page.evaluate(
            """() => [...document.querySelectorAll('article code')].filter(c => !c.closest('pre, .highlight, .cell_output'))
                   .filter(c => { const box = c.closest('.admonition, p, li, td, dd') || c.parentElement;
                                  return c.getBoundingClientRect().right > box.getBoundingClientRect().right + 1; })
                   .map(c => c.textContent.slice(0, 60))"""
        )
        assert not clipped, f"{name}: inline code runs past its box at {viewport} width: {clipped[:3]}"

        # One search field: the header's button and the sidebar's field must not both show.
        searches = page.evaluate(
            """() => [...document.querySelectorAll('.search-button-field, form.bd-search, .sidebar-primary-item form[role=search]')]
                   .filter(e => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
                                  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; }).length"""
        )
        assert searches <= 1, f"{name}: {searches} search fields visible at {viewport} width"

        if name in notebook_files():
            expected = f"https://mybinder.org/v2/gh/tinyformer/tinyformer/main?urlpath=lab/tree/notebooks/{name}.ipynb"
            assert page.locator(f'a[href="{expected}"]').count() >= 1, f"{name}: no Binder launch button"
    finally:
        visit.close()


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_blocks_that_scroll_sideways_are_tab_stops_as_the_reader_reaches_them(server, browser, viewport):
    """Sections off screen are not rendered at load (content-visibility), so the theme's tab stops
    for scrolling blocks are set as each section comes near (book_speed.TAB_STOPS_SCRIPT): until
    then a block is a tab stop; once its section is reached, exactly the blocks that scroll are."""
    visit = Visit(browser, f"{server}training.html", VIEWPORTS[viewport])
    page = visit.page
    try:
        blocks = "[...document.querySelectorAll('.bd-article > section > section pre')]"
        assert page.evaluate(f"{blocks}.length") >= 10
        far = page.evaluate(f"{blocks}.slice(-3).map(e => e.tabIndex)")
        assert far == [0, 0, 0], f"blocks far below the screen are not tab stops yet: {far}"
        for i in range(page.evaluate(f"{blocks}.length")):
            page.evaluate(f"{blocks}[{i}].scrollIntoView()")
            page.wait_for_timeout(20)
        page.wait_for_timeout(200)
        wrong = page.evaluate(f"""{blocks}.filter(e => e.tabIndex !== (e.scrollWidth > e.clientWidth ||
                                   e.scrollHeight > e.clientHeight ? 0 : -1)).length""")
        assert wrong == 0, f"{wrong} blocks have the wrong tab stop at {viewport} width after scrolling to them"
        if viewport == "desktop":  # some blocks fit a wide screen: those are no tab stop
            assert page.evaluate(f"{blocks}.filter(e => e.tabIndex === -1).length") >= 1
    finally:
        visit.close()


@pytest.mark.parametrize("scheme", sorted(THEME))
@pytest.mark.parametrize("name", ["intro", "attention", "training"])
def test_theme_and_contrast_in_light_and_dark(server, browser, name, scheme):
    visit = Visit(browser, f"{server}{name}.html", VIEWPORTS["desktop"], scheme=scheme)
    try:
        page = visit.page
        assert page.evaluate("document.documentElement.dataset.theme") == scheme
        colors = page.evaluate(
            """() => {
                const p = document.querySelector('article p');
                const link = document.querySelector('article p a:not(.headerlink), article a.reference');
                return {text: getComputedStyle(p).color, link: getComputedStyle(link).color,
                        bg: getComputedStyle(document.body).backgroundColor};
            }"""
        )
        assert _rgb(colors["link"]) == THEME[scheme]["link"], f"theme link colour not applied: {colors}"
        ratio = contrast(_rgb(colors["text"]), _rgb(colors["bg"]))
        assert ratio >= 4.5, f"body text contrast {ratio:.2f} < 4.5 in {scheme} mode"
        assert contrast(_rgb(colors["link"]), _rgb(colors["bg"])) >= 4.5
    finally:
        visit.close()


def test_internal_links_and_anchors_resolve(server):
    """Every internal href on every page points at a page that exists, and its #anchor is on it."""
    cache: dict[str, str] = {}

    def fetch(url: str) -> str:
        if url not in cache:
            with urllib.request.urlopen(url) as response:
                cache[url] = response.read().decode("utf-8", errors="replace")
        return cache[url]

    broken = []
    checked = 0
    for name in PAGES:
        page_url = f"{server}{name}.html"
        for href in re.findall(r'href="([^"]+)"', fetch(page_url)):
            target = urljoin(page_url, href.replace("&amp;", "&"))
            if not target.startswith(server):
                continue
            base, anchor = urldefrag(target)
            path = urlparse(base).path
            if path.endswith((".css", ".js", ".ico", ".svg", ".png", ".woff", ".woff2", ".ipynb", ".md", ".inv")):
                continue
            checked += 1
            try:
                body = fetch(base)
            except Exception as exc:  # noqa: BLE001 - report every broken link together
                broken.append(f"{name}: {href} ({exc})")
                continue
            if anchor and not re.search(rf'id="{re.escape(anchor)}"', body):
                broken.append(f"{name}: {href} (no #{anchor} on the page)")
    assert checked > 100
    assert not broken, "\n".join(broken)


def test_site_search_finds_attention(server, browser):
    visit = Visit(browser, f"{server}search.html?q=attention", VIEWPORTS["desktop"])
    try:
        visit.page.wait_for_selector("#search-results ul li, ul.search li", timeout=20_000)
        hits = visit.page.locator("ul.search li").count()
        assert hits >= 5, f"search for 'attention' found {hits} pages"
        assert visit.page.locator("ul.search li a[href*='attention.html']").count() >= 1
    finally:
        visit.close()


@pytest.mark.parametrize("scheme", sorted(THEME))
@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
@pytest.mark.parametrize("name", PAGES)
def test_accessibility_axe(server, browser, name, viewport, scheme):
    _require(AXE.exists(), f"axe-core not found at {AXE} (npm install --prefix tests/.node axe-core)")
    visit = Visit(browser, f"{server}{name}.html", VIEWPORTS[viewport], scheme=scheme)
    try:
        visit.page.add_script_tag(path=str(AXE))
        violations = visit.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
        )
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, "\n".join(f"{v['impact']}: {v['id']} ({v['help']}) at {v['nodes']}" for v in serious)
    finally:
        visit.close()


# ------------------------------------------------------------------ the slide decks and the PDF

DECKS = [f for f in notebook_files() if f != "intro"]
SLIDE_SHOTS = ROOT / "artifacts" / "slides"


@pytest.mark.parametrize("name", DECKS)
def test_slide_deck_in_the_browser(server, browser, name):
    """Loads offline without errors, the arrow key visits every slide in order, 8-20 slides,
    speaker notes, figures loaded, nothing runs off the 16:9 slide; a screenshot of the first."""
    visit = Visit(browser, f"{server}slides/{name}.slides.html", {"width": 1280, "height": 720})
    page = visit.page
    try:
        page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=20_000)
        assert page.evaluate("[Reveal.getConfig().width, Reveal.getConfig().height]") == [1280, 720]
        total = page.evaluate("Reveal.getTotalSlides()")
        assert 8 <= total <= 20, f"{name}: {total} slides"
        SLIDE_SHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("document.fonts.ready")
        page.screenshot(path=str(SLIDE_SHOTS / f"{name}.png"))
        seen, overflowing = [], []
        for _ in range(total + 5):  # fragments take a key press each
            index = page.evaluate("Reveal.getIndices().h")
            if not seen or seen[-1] != index:
                seen.append(index)
                over = page.evaluate(
                    """() => { const s = Reveal.getCurrentSlide(), top = s.getBoundingClientRect().top,
                                   scale = Reveal.getScale(), bottom = top + 720 * scale;
                               return [...s.children].map(c => c.getBoundingClientRect().bottom)
                                   .filter(b => b > bottom + 2).length; }""")
                if over:
                    overflowing.append(index + 1)
            if page.evaluate("Reveal.isLastSlide() && !Reveal.availableFragments().next"):
                break
            page.keyboard.press("ArrowRight")
        assert seen == list(range(total)), f"{name}: ArrowRight visited slides {seen} of {total}"
        assert not overflowing, f"{name}: slides {overflowing} run past the bottom of the 1280x720 slide"
        notes = page.evaluate("[...document.querySelectorAll('aside.notes')].filter(n => n.textContent.trim()).length")
        assert notes >= total, f"{name}: {notes} speaker notes for {total} slides"
        images = page.evaluate("[...document.querySelectorAll('.slides img')].map(i => [i.naturalWidth, i.alt])")
        assert images and all(w > 0 and alt for w, alt in images), f"{name}: a figure did not load or has no alt"
        assert page.locator("mjx-container").count() > 0 or "$" not in page.inner_text(".slides"), (
            f"{name}: MathJax did not typeset the slides' math")
        assert not visit.console_errors, visit.console_errors
        assert not visit.failed, visit.failed
    finally:
        visit.close()


def test_book_prints_to_one_pdf(server, browser, tmp_path):
    """`python3 tasks.py pdf`'s printing step on the session's build: every chapter in TOC
    order, figures and typeset math (make_pdf refuses otherwise), code not cut, A4 pages."""
    import sys

    from pypdf import PdfReader

    sys.path.insert(0, str(ROOT / "_ext"))
    import book_pdf

    out = tmp_path / "tinyformer.pdf"
    result = book_pdf.make_pdf(HTML, out, browser=browser)
    reader = PdfReader(out)
    assert len(reader.pages) == result["pages"]
    assert 180 <= result["pages"] <= 420, f"{result['pages']} pages (278 when this test was written)"
    # Chromium sizes A4 in whole CSS pixels: 595.9 pt wide, against 595.28 pt exactly.
    assert all(float(p.mediabox.width) <= book_pdf.A4_WIDTH_PT + 1.0 for p in reader.pages), "a page wider than A4"
    text = " ".join(p.extract_text() for p in reader.pages)
    flat = " ".join(text.split())
    for title in result["titles"]:
        assert " ".join(title.split()) in flat, f"chapter title {title!r} not in the PDF's text"
    assert [o.title for o in reader.outline] == result["titles"]
    assert len(result["titles"]) == len(PAGES)
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "pdf.json").write_text(
        f'{{"pages": {result["pages"]}, "bytes": {result["bytes"]}, "seconds": {result["seconds"]:.1f}}}\n')
