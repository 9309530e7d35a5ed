"""What the build does to each page for a phone (_ext/book_speed.py), on small made-up sites and
the installed theme's own script: no build needed. The built site's budgets are held by
tests/test_site_budgets.py, its behaviour in Chromium by tests/test_browser.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from site_build import ROOT

sys.path.insert(0, str(ROOT / "_ext"))
import book_speed  # noqa: E402

HEAD = """<head>
    <link href="_static/styles/theme.css?digest=1" rel="stylesheet" />
    <link rel="stylesheet" type="text/css" href="_static/site.css?v=2" />
    <link media="print" rel="stylesheet" type="text/css" href="_static/print.css" />
    <link rel="stylesheet" href="https://example.org/remote.css" />
    <script defer src="_static/one.js?v=1"></script>
    <script>let inline = 1;</script>
    <script defer data-sd-tabs-storage-prefix="p-" src="_static/two.js"></script>
    <script async="async" src="_static/three.js"></script>
    <link rel="preload" as="script" href="_static/two.js" />
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    static = tmp_path / "_static"
    (static / "styles").mkdir(parents=True)
    (static / "basic.css").write_text("div.basic { color: red }\n")
    (static / "styles" / "theme.css").write_text('@import "../basic.css";\n.theme { background: url(../img/a.png) }\n'
                                                 "/*# sourceMappingURL=theme.css.map */\n")
    (static / "site.css").write_text('.site { background: url("data:image/svg+xml;utf8,<svg/>") }\n')
    (static / "one.js").write_text("var one = 1;\n//# sourceMappingURL=one.js.map\n")
    (static / "two.js").write_text("var two = one + 1;\n")
    return tmp_path


def test_stylesheets_are_joined_in_order_with_imports_inlined_and_urls_for_the_bundle(site):
    written: dict[str, str] = {}
    head = book_speed.bundle_stylesheets(HEAD, site, site, written)
    (name,) = written.values()
    css = (site / name).read_text()
    assert css.index("div.basic") < css.index(".theme") < css.index(".site")  # @import first, then the page's order
    assert "url(img/a.png)" in css and "data:image/svg+xml;utf8,<svg/>" in css and "sourceMappingURL" not in css
    assert head.count('rel="stylesheet"') == 3  # the bundle, print and the remote one stay
    assert f'<link rel="stylesheet" href="{name}" data-stylesheets="_static/styles/theme.css _static/site.css" />' in head
    assert 'media="print"' in head and "https://example.org/remote.css" in head


def test_a_later_build_rejoins_the_current_files(site):
    head = book_speed.bundle_stylesheets(HEAD, site, site, {})
    (site / "_static" / "site.css").write_text(".site { color: blue }\n")
    written: dict[str, str] = {}
    again = book_speed.bundle_stylesheets(head, site, site, written)
    (name,) = written.values()
    assert ".site { color: blue }" in (site / name).read_text()
    assert again.count('rel="stylesheet"') == head.count('rel="stylesheet"') and name in again


def test_deferred_scripts_are_joined_in_order_and_keep_their_data_attributes(site):
    written: dict[str, str] = {}
    head = book_speed.bundle_scripts(HEAD, site, site, written)
    (name,) = written.values()
    js = (site / name).read_text()
    assert js.index("var one") < js.index("var two") and "sourceMappingURL" not in js
    assert (f'<script defer src="{name}" data-scripts="_static/one.js _static/two.js" '
            'data-sd-tabs-storage-prefix="p-"></script>') in head
    assert '<script async="async" src="_static/three.js"></script>' in head  # async: runs when it arrives, stays apart
    assert "<script>let inline = 1;</script>" in head
    assert 'rel="preload" as="script" href="_static/two.js"' not in head  # it would be fetched twice
    assert book_speed.bundle_scripts(head, site, site, {}) == head  # rebuilt from the list: the same


def test_the_search_scripts_stay_apart(site):
    """sphinx_highlight.js asks `typeof Search`; in one file with searchtools.js's `const Search`
    that throws (a name used before its declaration), so the search page's scripts are not joined."""
    (site / "_static" / "searchtools.js").write_text("const Search = {};\n")
    page = HEAD + '    <script defer src="_static/searchtools.js"></script>\n'
    written: dict[str, str] = {}
    head = book_speed.bundle_scripts(page, site, site, written)
    assert '<script defer src="_static/searchtools.js"></script>' in head
    assert "const Search" not in (site / next(iter(written.values()))).read_text()


def test_the_theme_script_sets_its_tab_stops_without_rendering_off_screen_sections():
    import pydata_sphinx_theme

    script = (Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / "static" / "scripts"
              / "pydata-sphinx-theme.js").read_text(encoding="utf-8")
    patched = book_speed.lazy_tab_stops(script)
    assert book_speed.TAB_STOPS_LOOP not in patched and patched.count("window.tinyformerTabStops(document.querySelectorAll(") == 1
    assert patched.startswith(book_speed.TAB_STOPS_SCRIPT) and patched.endswith(script[-200:])
    assert book_speed.lazy_tab_stops(patched) == patched  # an earlier build's copy is left alone
    with pytest.raises(ValueError, match="tab-stop loop"):
        book_speed.lazy_tab_stops("console.log('another theme')")


@pytest.mark.parametrize("tex, text", [
    (r"QK^\top/\sqrt{d_{head}}", "QKᵀ/√d_head"),
    (r"\tau", "τ"),
    (r"\mathrm{softmax}(x)", "softmax(x)"),
    (r"1 - \beta^{s+1}", "1 - β^(s+1)"),
])
def test_a_formula_in_a_search_snippet_is_plain_text(tex, text):
    assert book_speed.plain_math(tex) == text
