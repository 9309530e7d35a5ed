"""Math typeset at build time (_ext/book_math.py): KaTeX in QuickJS, checked against the MathML
a formula must have (written out by hand) and against its own errors. No build needed."""

from __future__ import annotations

import re
import sys

import pytest
from docutils import nodes

from site_build import ROOT

sys.path.insert(0, str(ROOT / "_ext"))
import book_math  # noqa: E402


def mathml(tex: str, display: bool = False) -> str:
    """The MathML KaTeX writes for screen readers, without its TeX annotation and attributes."""
    out = book_math.render(tex, display)
    body = re.search(r"<semantics>(.*)<annotation", out, re.S).group(1)
    return re.sub(r"<(\w+)[^>]*>", r"<\1>", body)


@pytest.mark.parametrize("tex, expected", [
    (r"\frac{a}{b}", "<mrow><mfrac><mi>a</mi><mi>b</mi></mfrac></mrow>"),
    (r"x^2", "<mrow><msup><mi>x</mi><mn>2</mn></msup></mrow>"),
    (r"\sqrt{d}", "<mrow><msqrt><mi>d</mi></msqrt></mrow>"),
    (r"QK^\top", "<mrow><mi>Q</mi><msup><mi>K</mi><mi>⊤</mi></msup></mrow>"),
])
def test_a_formula_has_the_structure_a_screen_reader_reads(tex, expected):
    assert mathml(tex) == expected


def test_html_and_annotation():
    out = book_math.render(r"\sqrt{d_{head}}")
    assert out.startswith('<span class="katex"><span class="katex-mathml"><math xmlns="http://www.w3.org/1998/Math/MathML">')
    assert '<annotation encoding="application/x-tex">\\sqrt{d_{head}}</annotation>' in out
    assert '<span class="katex-html" aria-hidden="true">' in out  # what is seen; the MathML is what is read
    display = book_math.render(r"a = b", display=True)
    assert display.startswith('<span class="katex-display">') and 'display="block"' in display


def test_a_formula_katex_cannot_read_is_an_error_that_names_it():
    with pytest.raises(book_math.MathError, match=r"KaTeX cannot typeset '\\\\frac\{a': .*expected '\}'"):
        book_math.render(r"\frac{a")
    with pytest.raises(book_math.MathError, match=r"Undefined control sequence: \\notacommand"):
        book_math.render(r"\notacommand x")


def _block(text: str, nowrap: bool = False) -> nodes.math_block:
    node = nodes.math_block(text, text)
    node["nowrap"] = nowrap
    return node


def test_display_math_is_arranged_as_sphinx_arranges_it():
    assert book_math.display_tex(_block("a = b")) == "a = b"
    # paragraphs become aligned rows; a paragraph with line breaks is aligned on its &
    assert book_math.display_tex(_block("a = b\n\nc = d")) == r"\begin{aligned}a = b\\c = d\end{aligned}"
    assert book_math.display_tex(_block(r"a &= b \\ c &= d")) == r"\begin{aligned}a &= b \\ c &= d\end{aligned}"
    # amsmath environments (nowrap) are left as written
    assert book_math.display_tex(_block(r"\begin{align}a\end{align}", nowrap=True)) == r"\begin{align}a\end{align}"
    for node in (_block("a = b\n\nc = d"), _block(r"a &= b \\ c &= d")):
        assert 'class="katex-display"' in book_math.render(book_math.display_tex(node), display=True)
