"""Offline reading (issue 23): after one visit, the book opens without a network.

The built site is served from a server of this test's own, which is shut down after the first
visit (and the browser context is set offline too), so nothing can come from the network: three
other chapters must open from the service worker's cache with their figures and their math.
A new publish (a sw.js with another build id) must replace the cache, not add to it.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading

import pytest

from site_build import HTML, build_site
from test_browser import VIEWPORTS, browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser]

CHAPTERS = ("tokens", "attention", "walkthrough")  # each has figures and math
# `ready` resolves once the worker is active, which may still be "activating": wait for "activated".
READY = """navigator.serviceWorker.ready.then(r => r.active.state === "activated" ? "activated"
    : new Promise(done => r.active.addEventListener("statechange", e => e.target.state === "activated" && done("activated"))))"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    build_id = None  # when set, sw.js is served as from a new publish with this build id

    def log_message(self, *args):
        pass

    def send_head(self):
        if self.path.split("?")[0] == "/sw.js" and self.build_id:
            body = re.sub(r'const BUILD_ID = "[0-9a-f]+"', f'const BUILD_ID = "{self.build_id}"',
                          (HTML / "sw.js").read_text(encoding="utf-8")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            import io
            return io.BytesIO(body)
        return super().send_head()


def _serve(handler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(HTML)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


@pytest.fixture(scope="module")
def site():
    result = build_site()
    assert result["returncode"] == 0, result["log"][-4000:]


def test_after_one_visit_three_other_chapters_open_offline_with_figures_and_math(site, browser):
    httpd, base = _serve(_Handler)
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    try:
        page = context.new_page()
        page.goto(f"{base}intro.html", wait_until="load")
        assert page.evaluate(READY) == "activated"  # installed: every precached file is in the cache
        httpd.shutdown()
        httpd.server_close()
        context.set_offline(True)
        failed = []
        page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} (HTTP {r.status})"))
        for name in CHAPTERS:
            page.goto(f"{base}{name}.html", wait_until="load")
            assert name in page.url and page.title().endswith("tinyformer") and page.locator("main h1").count() >= 1, name
            figures = page.locator("main img[src*='_images/']")
            assert figures.count() >= 1, f"{name} has no figure to check"
            for i in range(min(2, figures.count())):  # the first, and a lazy one further down
                figures.nth(i).scroll_into_view_if_needed()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figures.nth(i).element_handle(),
                                       timeout=10_000)
            # the math, typeset at build time, is drawn with KaTeX's fonts, from the cache
            assert page.locator("main .katex").count() >= 1, name
            page.locator("main .katex").first.scroll_into_view_if_needed()
            assert page.evaluate("document.fonts.ready.then(() => [...document.fonts].some("
                                 "f => f.family === 'KaTeX_Main' && f.status === 'loaded'))"), f"{name}: KaTeX's font did not load offline"
        assert not failed, failed
    finally:
        context.close()
        httpd.server_close()


def test_a_new_publish_replaces_the_cache(site, browser):
    handler = type("NewPublish", (_Handler,), {"build_id": None})
    httpd, base = _serve(handler)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}intro.html", wait_until="load")
        assert page.evaluate(READY) == "activated"
        first = page.evaluate("caches.keys()")
        assert len(first) == 1 and first[0].startswith(f"tinyformer:{base}:"), first
        handler.build_id = "0123456789abcdef"
        page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.update())")
        new = [f"tinyformer:{base}:0123456789abcdef"]
        for _ in range(300):  # the new worker installs its cache, then deletes the old one
            if page.evaluate("caches.keys()") == new:
                break
            page.wait_for_timeout(100)
        assert page.evaluate("caches.keys()") == new
    finally:
        context.close()
        httpd.shutdown()
        httpd.server_close()
