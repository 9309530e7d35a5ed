"""The whole book as one printable PDF: ``python3 tasks.py pdf`` -> ``_build/pdf/tinyformer.pdf``.

Each page of the built site, in TOC order, is printed by Chromium's own print engine (Debian's
``/usr/bin/chromium`` driven by Playwright; no browser download) once its math fonts have loaded,
with the site's print stylesheet (assets/css/print.css: no navigation, code wrapped rather than
cut). The pages are joined with pypdf, with one bookmark per page. Offline: the site is served
from a local folder and KaTeX's fonts are vendored.

    .venv/bin/python _ext/book_pdf.py [_build/html] [_build/pdf/tinyformer.pdf]
"""

from __future__ import annotations

import functools
import http.server
import io
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from book_toc import toc_files

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
A4_WIDTH_PT = 595.28  # 210 mm
MARGIN = {"top": "14mm", "bottom": "14mm", "left": "12mm", "right": "12mm"}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(folder: Path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()


# Code blocks and outputs whose text runs past their box in print (would be cut at the page edge).
_CLIPPED = """() => [...document.querySelectorAll('article pre, article .highlight, article table')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent.trim().split('\\n')[0].slice(0, 60))"""


def make_pdf(html_dir: Path, out: Path, pages: list[str] | None = None, browser=None) -> dict:
    """Print ``pages`` (default: the TOC) of the built site into one PDF at ``out``, with
    ``browser`` (a Playwright Chromium; default: launch /usr/bin/chromium).
    Returns {"pages": n, "bytes": size, "seconds": t, "titles": [...]}; raises if a page is
    missing, a figure did not load, KaTeX left an error, or code would be cut."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        if not CHROMIUM.exists():
            raise FileNotFoundError(f"{CHROMIUM} not found: the PDF is printed by Debian's Chromium "
                                    f"(apt-get install chromium)")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            try:
                return make_pdf(html_dir, out, pages, browser)
            finally:
                browser.close()
    from pypdf import PdfReader, PdfWriter

    html_dir, out = Path(html_dir), Path(out)
    pages = pages or toc_files()
    missing = [p for p in pages if not (html_dir / f"{p}.html").exists()]
    if missing:
        raise FileNotFoundError(f"not built: {', '.join(f'{p}.html' for p in missing)} in {html_dir} (run the build first)")
    start = time.perf_counter()
    writer, titles, problems = PdfWriter(), [], []
    with serve(html_dir) as base:
        page = browser.new_page(viewport={"width": 900, "height": 1200})
        page.emulate_media(media="print", color_scheme="light")
        for name in pages:
            page.goto(f"{base}{name}.html", wait_until="load")
            page.wait_for_load_state("networkidle")
            # The print stylesheet renders every section (on screen, off-screen ones wait for the reader),
            # so the fonts the math asks for are all loading: wait for them (math is typeset at build time).
            page.evaluate("document.fonts.ready.then(() => null)")
            # Figures below the fold load as a reader scrolls (loading="lazy"): a printed page needs them all.
            page.evaluate("Promise.all([...document.querySelectorAll('img[loading=lazy]')].map(i => "
                          "{ i.loading = 'eager'; return i.decode().catch(() => null); }))")
            if page.locator(".katex-error").count():
                problems.append(f"{name}: KaTeX could not typeset some math")
            broken = page.evaluate("[...document.querySelectorAll('article img')].filter(i => !i.complete || !i.naturalWidth).map(i => i.src)")
            if broken:
                problems.append(f"{name}: figures did not load: {broken[:3]}")
            clipped = page.evaluate(_CLIPPED)
            if clipped:
                problems.append(f"{name}: would be cut at the page edge: {clipped[:3]}")
            title = page.evaluate("(document.querySelector('article h1') || {}).textContent || document.title")
            titles.append(title.replace("#", "").strip())
            first = len(writer.pages)
            writer.append(PdfReader(io.BytesIO(page.pdf(format="A4", margin=MARGIN, print_background=True))))
            writer.add_outline_item(title=titles[-1], page_number=first)
        page.close()
    if problems:
        raise RuntimeError("PDF not written:\n" + "\n".join(problems))
    writer.add_metadata({"/Title": "tinyformer", "/Author": "The tinyformer authors"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        writer.write(f)
    return {"pages": len(writer.pages), "bytes": out.stat().st_size, "seconds": time.perf_counter() - start,
            "titles": titles}


def main(argv: list[str]) -> None:
    html_dir = Path(argv[0]) if argv else ROOT / "_build" / "html"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "_build" / "pdf" / "tinyformer.pdf"
    try:
        result = make_pdf(html_dir, out)
    except (FileNotFoundError, RuntimeError) as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {out}: {result['pages']} pages, {result['bytes'] / 1e6:.1f} MB, "
          f"{len(result['titles'])} chapters, in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
