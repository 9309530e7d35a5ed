"""The built site: every page present, strict, figures with alt text, theme, launch links."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from site_build import HTML, ROOT, build_site, notebook_files, toc_files

pytestmark = pytest.mark.book

CHAPTERS = [f for f in notebook_files() if f != "intro"]


@pytest.fixture(scope="module")
def site():
    result = build_site()
    assert result["returncode"] == 0, "strict build failed:\n" + result["log"][-6000:]
    return result


def page(name: str) -> BeautifulSoup:
    return BeautifulSoup((HTML / f"{name}.html").read_text(encoding="utf-8"), "html.parser")


def test_book_toc_is_a_link_to_the_top_level_toc():
    """One TOC: `jupyter-book build book/` reads book/_toc.yml, a relative symbolic link (git
    stores the link, not a copy) to the _toc.yml everything else reads."""
    link = ROOT / "book" / "_toc.yml"
    assert link.is_symlink() and str(link.readlink()) == "../_toc.yml", "run: ln -sf ../_toc.yml book/_toc.yml"
    assert link.resolve() == (ROOT / "_toc.yml").resolve()
    assert toc_files(link) == toc_files() and toc_files()[0] == "intro"


def test_build_has_no_warnings_or_failed_cells(site):
    # Sphinx's "WARNING:"/"ERROR:"; the kernel's "[IPKernelApp] WARNING | ... TCP" notice is harmless.
    problems = [line for line in site["log"].splitlines() if re.search(r"\b(WARNING|ERROR):", line)]
    assert not problems, "\n".join(problems)
    reports = HTML / "reports"
    assert not reports.exists() or not any(reports.iterdir()), "a cell failed: see _build/html/reports"


@pytest.mark.parametrize("name", toc_files())
def test_every_toc_entry_has_a_page_without_errors(site, name):
    html = page(name)
    assert html.find("h1"), f"{name}.html has no title"
    for output in html.select("div.cell_output, div.output"):
        cell = output.find_parent("div", class_="cell")
        expected_error = cell is not None and "tag_raises-exception" in cell.get("class", [])
        text = output.get_text()
        if not expected_error:
            assert "Traceback (most recent call last)" not in text, f"traceback in {name}.html"
            assert not output.select(".output.traceback, .output.error"), f"error output in {name}.html"
    assert "{glue" not in html.get_text(), f"unresolved glue in {name}.html"
    for output in html.select("div.cell_output"):
        assert not re.search(r"<[\w.]+ (object )?at 0x[0-9a-f]+>", output.get_text()), (
            f"{name}.html prints an object's repr instead of a result: {output.get_text()[:120]}"
        )


@pytest.mark.parametrize("name", toc_files())
def test_every_figure_exists_and_has_alt_text(site, name):
    for img in page(name).select("article img, main img"):
        src = img.get("src", "")
        if src.startswith("http") or src.startswith("data:"):
            continue
        assert (HTML / name).parent.joinpath(src.split("?")[0]).resolve().exists(), f"{name}: missing image {src}"
        assert img.get("alt", "").strip(), f"{name}: image {src} has no alt text"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_objectives_figure_check_and_exercises(site, name):
    html = page(name)
    assert html.select(".admonition.objectives"), f"{name}: no learning objectives"
    assert html.select("div.cell_output img"), f"{name}: no figure made at build time"
    assert html.find(id=re.compile("check-against-pytorch")), f"{name}: no 'Check against PyTorch' section"
    exercises = html.find(id="exercises")
    assert exercises and exercises.select("details"), f"{name}: no exercises with hidden solutions"
    assert html.select("a.reference.internal[href*='bibliography']") or html.select("span.cite, a[href*='bibliography.html#id']"), (
        f"{name}: no citation"
    )


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_the_teaching_scaffolding(site, name):
    """Where we are (links back and forward), key takeaways, self-check with hidden answers,
    discussion questions: the parts a reader and a reading group lean on."""
    html = page(name)
    roadmap = html.select_one(".admonition.roadmap")
    assert roadmap, f"{name}: no 'Where we are' roadmap"
    linked = {a["href"].split("#")[0].removesuffix(".html") for a in roadmap.select("a.reference.internal")}
    order = [c for c in CHAPTERS]
    i = order.index(name)
    neighbours = set(order[max(0, i - 1):i] + order[i + 1:i + 2])
    assert linked & neighbours, f"{name}: the roadmap links to none of {sorted(neighbours)} (found {sorted(linked)})"
    takeaways = html.find(id="key-takeaways")
    assert takeaways and 3 <= len(takeaways.select("li")) <= 5, f"{name}: 'Key takeaways' needs 3 to 5 bullets"
    self_check = html.find(id="self-check")
    assert self_check and self_check.select("details"), f"{name}: no self-check with hidden answers"
    assert html.find(id="discussion-questions"), f"{name}: no discussion questions"


# The chapters with a classic pitfall show it in a "Common mistakes" box.
PITFALLS = ["tokens", "attention", "masks", "multihead", "normalization", "language_model", "training", "sampling"]


@pytest.mark.parametrize("name", PITFALLS)
def test_chapter_names_its_common_mistakes(site, name):
    assert page(name).select(".admonition.mistakes"), f"{name}: no 'Common mistakes' box"


@pytest.mark.parametrize("name", toc_files())
def test_theme_css_is_linked(site, name):
    """The site's theme reaches the page: in the page's one stylesheet (the build joins the page's
    stylesheets, book_speed.bundle_stylesheets), as the current assets/css/style.css, after the theme's."""
    links = [link for link in page(name).select("link[rel=stylesheet]") if link.get("media") != "print"]
    assert len(links) == 1, [link.get("href") for link in links]
    assert "_static/style.css" in links[0]["data-stylesheets"].split(), links[0]["data-stylesheets"]
    bundle = (HTML / links[0]["href"]).read_text(encoding="utf-8")
    theme = (ROOT / "assets" / "css" / "style.css").read_text(encoding="utf-8")
    assert theme in bundle, "the page's stylesheet does not hold the current style.css"
    assert bundle.index("/* _static/styles/pydata-sphinx-theme.css */") < bundle.index(theme), "style.css must come after the theme's"
    assert (HTML / "_static" / "style.css").read_bytes() == (ROOT / "assets" / "css" / "style.css").read_bytes()


@pytest.mark.parametrize("name", notebook_files())
def test_launch_button_opens_this_chapter_in_binder(site, name):
    urls = {a["href"] for a in page(name).select("a[href^='https://mybinder.org/v2/gh/']")}
    # The chapter's reader's notebook, which binder/postBuild writes (test_binder.py opens it there).
    expected = f"https://mybinder.org/v2/gh/tinyformer/tinyformer/main?urlpath=lab/tree/notebooks/{name}.ipynb"
    assert expected in urls, urls
    for url in urls:
        path = url.split("urlpath=lab/tree/notebooks/", 1)[1]
        assert path.endswith(".ipynb") and (ROOT / "book" / path).with_suffix(".md").is_file(), \
            f"launch URL names {path}, which is no chapter's notebook"


def test_claims_json_lists_every_chapters_claims_all_held(site):
    """Every chapter with computed content states at least 4 claims that its own output checks."""
    data = json.loads((HTML / "claims.json").read_text(encoding="utf-8"))
    claims = data["claims"]
    assert all({"chapter", "text", "values", "held"} <= set(c) for c in claims)
    assert all(c["held"] is True for c in claims), [c for c in claims if not c["held"]]
    per_chapter = {name: [c for c in claims if c["chapter"] == name] for name in CHAPTERS}
    thin = {name: len(found) for name, found in per_chapter.items() if len(found) < 4}
    assert not thin, f"chapters with fewer than 4 checked claims: {thin}"
    assert len({(c["chapter"], c["text"]) for c in claims}) == len(claims), "a claim is stated twice"


def test_running_example_is_the_same_tensors_on_every_page(site):
    """Chapters pick up the walkthrough where the previous one left it: every page that shows
    a step shows the same tensor, and it is the one walkthrough() computes here."""
    from tinyformer.book.page import tensor_fingerprint
    from tinyformer.book.walkthrough import walkthrough

    shown = [c for c in json.loads((HTML / "claims.json").read_text(encoding="utf-8"))["claims"]
             if c["text"].startswith("the running example at ")]
    chapters = {c["chapter"] for c in shown}
    assert len(chapters) >= 5, f"the running example appears only in {sorted(chapters)}"
    w = walkthrough()
    for c in shown:
        for step, fingerprint in c["values"].items():
            assert fingerprint == tensor_fingerprint(w[step]), f"{c['chapter']} shows a different {step}"


def test_figure_descriptions_from_data_reach_the_page(site):
    """describe_figure() alt text and captions replace what the cell metadata says."""
    figures = json.loads((HTML / "claims.json").read_text(encoding="utf-8"))["figures"]
    assert figures, "no figure is described from its data"
    for record in figures:
        html = page(record["chapter"])
        alts = [img.get("alt", "") for img in html.select("figure img")]
        assert record["alt"] in alts, f"{record['chapter']}: alt text of {record['name']} not on the page"
        if record["caption"]:
            captions = [c.get_text(" ", strip=True) for c in html.select("figure figcaption")]
            assert any(record["caption"] in c for c in captions), f"{record['chapter']}: caption of {record['name']}"


def test_published_tracebacks_hold_no_builder_paths(site):
    """The intended-error cells (tagged raises-exception) show tracebacks: they name files
    relative to the repository and <site-packages>/, not the builder's home, checkout or Python."""
    import sys

    leaks = {str(ROOT), str(Path.home()), sys.prefix, sys.base_prefix} - {"/", ""}
    shown = {}
    for path in [*HTML.glob("*.html"), *(HTML / "slides").glob("*.slides.html")]:
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        blocks = soup.select(".output.traceback, .output.stderr, [data-mime-type='application/vnd.jupyter.stderr']")
        for block in blocks:
            text = block.get_text()
            shown[path.name] = shown.get(path.name, "") + text
            assert not [leak for leak in leaks if leak in text], f"{path.name}: a builder's path in {text[:300]!r}"
            assert not re.search(r"[/\\](site|dist)-packages[/\\]", text), f"{path.name}: {text[:300]!r}"
    assert "tokens.html" in shown, f"no traceback found on the tokens page; pages with one: {sorted(shown)}"
    assert re.search(r"(?<![\w/~.])tinyformer/tokenizer\.py", shown["tokens.html"]), shown["tokens.html"][:600]


# One symbol per quantity (the cheat sheet's table): spellings the book has retired.
RETIRED = {
    r"\bd_k\b|d_\{k\}": "the head width is d_head",
    r"\bDh\b|\bd_h\b|d_\{h\}": "the head width is d_head",
    r"\\sqrt\{d\}|sqrt\(d\)": "write the head width as d_head, not a bare d",
    r"[Tt]emperature \$?T\b|softmax\(z ?/ ?T\)|logits ?/ ?T\b": "the temperature is tau; T is the sequence length",
    # sigma is a standard deviation only: the sigmoid and the softmax are written as words
    r"σ\s*\(|\\sigma\s*(\\left\s*)?\(|\\sigma_\{?\\?(mathrm|text|operatorname)":
        "sigma is a standard deviation; write sigmoid(x) or softmax(x) as words",
    # heads are numbered as the code indexes them, from 0 to H - 1
    r"\b[Hh]eads? \$?1\$?\s*(to|through|-|–|—|\.\.\.?|…|,\s*\.\.\.?\s*,?)\s*(head\s*)?\$?H\b(?!\$?\s*[-−]\s*1)"
    r"|\b[Hh]ead \$?H\$?(?![\w{$]|\s*[-−]\s*1)":
        "heads are numbered from 0: head 0 ... head H - 1",
    # layers are counted from 1 in prose: layer 1 is the first block
    r"\b[Ll]ayer \$?0\b|\b[Bb]lock \$?0\b": "layers are counted from 1 in prose (layer 1 is the first block)",
}

# The cheat sheet defines every symbol the chapters use (in its Symbols table) and states the
# numbering conventions there.
CHEATSHEET_DEFINES = {
    r"^\| \$\\theta\$ \|": "theta, RoPE's base",
    r"^\| \$\\theta_i\$ \|": "theta_i, RoPE's angle per feature pair",
    r"^\| \$\\sigma\$ \| a standard deviation": "sigma, a standard deviation",
    r"^\| head \$h\$ \| heads are numbered from 0": "how heads are numbered",
    r"^\| layer \$l\$ \| layers are counted from 1": "how layers are counted",
}


def _numbered_heads(text: str) -> set[int]:
    """The head numbers a text names in prose: "head 3", "heads 0–3", "Head 1's"."""
    return {int(n) for n in re.findall(r"\b[Hh]eads? \$?(\d+)\b", text)}


@pytest.mark.parametrize("name", toc_files())
def test_chapters_use_one_notation(name):
    text = (ROOT / "book" / f"{name}.md").read_text(encoding="utf-8")
    if name == "cheatsheet":  # it names the retired spellings once, to explain them
        symbols = text.split("One symbol per quantity", 1)[0]
        for pattern, what in CHEATSHEET_DEFINES.items():
            assert re.search(pattern, symbols, re.M), f"cheatsheet.md's Symbols table does not define {what}"
        text = symbols
    for pattern, why in RETIRED.items():
        found = [m.group(0) for m in re.finditer(pattern, text)]
        assert not found, f"{name}.md uses {found[:3]} ({why})"
    heads = _numbered_heads(text)
    assert not heads or 0 in heads, (
        f"{name}.md numbers heads {sorted(heads)} but never names head 0: heads are numbered from 0, as the code indexes them")


@pytest.mark.parametrize("text, retired", [
    ("SiLU is $x \\sigma(x)$", True), ("the gate $\\sigma_{\\mathrm{sig}}$", True), ("x·σ(x)", True),
    ("variance $\\sigma^2$ and $\\pm 3\\sigma$", False), ("label=\"(s σ)²\"", False),
    ("heads 1 to $H$", True), ("head 1..H", True), ("heads 1–H", True), ("the last, head $H$", True),
    ("head 0, ..., head $H - 1$", False), ("head 0, head 1, ..., head $H - 1$", False), ("key/value head $H_{kv}$", False), ("$H$ heads", False),
    ("after layer 0", True), ("inside block 0", True), ("layer 1 is the first block", False), ("`blocks[0]`", False),
])
def test_notation_patterns_catch_what_they_should(text, retired):
    """The retired spellings above match what they are meant to, and not their allowed neighbours."""
    assert any(re.search(p, text) for p in RETIRED) == retired, text


def test_head_numbering_check():
    assert _numbered_heads("head 1 and head 2 of the walkthrough") == {1, 2}  # 1-based: refused (no head 0)
    assert _numbered_heads("heads 0–3 share key/value head 0") == {0}
    assert 0 in _numbered_heads("Head 0 and head 1 on the same input")


@pytest.mark.parametrize("cell, expected", [
    ("1 / 0", ["ZeroDivisionError"]),
    ("from tinyformer.book.claims import claim\nclaim('six times seven is 41', 6 * 7 == 41, product=6 * 7)",
     ["ClaimFailed", "six times seven is 41", "product=42"]),
], ids=["raising-cell", "false-claim"])
def test_cell_errors_and_false_claims_fail_the_build(tmp_path, cell, expected):
    """A chapter whose cell raises, or whose claim its output refutes, must fail the strict build
    (not publish a traceback or a false sentence), and say why."""
    import shutil
    import subprocess
    import sys

    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "CITATION.cff", "VERSION"):  # the book's config and its edition
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "_ext", tmp_path / "_ext")
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    shutil.copytree(ROOT / "tinyformer", tmp_path / "tinyformer")
    (book / "references.bib").write_text((ROOT / "book" / "references.bib").read_text())
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    header = (ROOT / "book" / "intro.md").read_text().split("---\n", 2)[1]
    (book / "intro.md").write_text(f"---\n{header}---\n# Broken\n\n```{{code-cell}} ipython3\n{cell}\n```\n")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "book/", "-W", "--keep-going"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stdout + proc.stderr, text
