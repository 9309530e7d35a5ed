"""Launch in Binder, as a reader does it.

The Binder environment (binder/requirements.txt + binder/postBuild, which writes the reader's
notebooks into notebooks/) is installed into a fresh venv; JupyterLab from that venv is started
on 127.0.0.1 with a token and a fixed port; each launch button's path, read from the built page,
is opened in Chromium. Every chapter must open as the reader's notebook and show what the page
shows: no speaker notes, no raw MyST, every citation resolved. Two chapters are run with Run All
in JupyterLab (screenshots in artifacts/binder/); every chapter's notebook is run with nbclient
in the Binder venv's kernel: no error output, except the errors a chapter demonstrates
(cells tagged raises-exception).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from site_build import HTML, ROOT, build_site, notebook_files, toc_files

sys.path.insert(0, str(ROOT / "_ext"))
import reader_notebook  # noqa: E402

pytestmark = [pytest.mark.book, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "artifacts" / "binder"
# Run with Run All in JupyterLab: quick, with figures and admonitions; tokens also demonstrates an
# error (a cell tagged raises-exception), after which Run All must go on.
RUN_ALL = ("attention", "tokens")
NOTEBOOKS = ROOT / reader_notebook.BINDER_DIR


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("binder") / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # The CPU index is unreachable offline: fail fast on it and resolve from the other sources.
    env = {**os.environ, "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], cwd=ROOT, env=env, check=True)
    subprocess.run(["bash", "binder/postBuild"], cwd=ROOT, check=True,
                   env={**env, "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"})
    return env_dir


def test_binder_environment_installs_and_opens_markdown_as_notebooks(binder_env):
    py = binder_env / "bin" / "python"
    out = subprocess.run(
        [py, "-c", "import tinyformer, torch, jupytext, jupyterlab_myst; nb = jupytext.read('book/attention.md'); "
                   "print(tinyformer.__version__, torch.__version__, len(nb.cells))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out[0] == (ROOT / "VERSION").read_text().strip() and out[1].startswith("2.13.0") and int(out[2]) > 10
    assert (ROOT / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")
    prefix = subprocess.run([py, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                            check=True).stdout.strip()
    settings = json.loads((Path(prefix) / "share/jupyter/lab/settings/overrides.json").read_text())
    viewers = settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    # postBuild wrote one reader's notebook per page that runs code, from this commit's sources.
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(notebook_files())


def _launch_paths() -> dict[str, str]:
    """chapter -> the JupyterLab path its "Launch Binder" button opens, read from the built page."""
    result = build_site()
    assert result["returncode"] == 0, result["log"][-4000:]
    paths = {}
    for name in notebook_files():
        html = (HTML / f"{name}.html").read_text(encoding="utf-8")
        links = re.findall(r'href="(https://mybinder\.org/[^"]+)"', html)
        assert links, f"{name}.html has no Binder launch button"
        query = parse_qs(urlparse(links[0].replace("&amp;", "&")).query)
        paths[name] = query["urlpath"][0]
    return paths


def test_every_launch_button_opens_the_chapters_reader_notebook(binder_env):
    paths = _launch_paths()
    assert len(paths) == len(notebook_files()) >= 12
    for name, urlpath in paths.items():
        assert urlpath == f"lab/tree/{reader_notebook.BINDER_DIR}/{name}.ipynb", urlpath
        assert (ROOT / urlpath.removeprefix("lab/tree/")).is_file(), f"postBuild wrote no {urlpath}"
    # The home page's own "Launch in Binder" button too.
    hero = re.findall(r'href="(https://mybinder\.org/[^"]+)"', (HTML / "intro.html").read_text(encoding="utf-8"))
    for link in hero:
        urlpath = parse_qs(urlparse(link.replace("&amp;", "&")).query)["urlpath"][0]
        assert (ROOT / urlpath.removeprefix("lab/tree/")).is_file() and urlpath.endswith(".ipynb"), urlpath


# Runs in the Binder venv: each reader's notebook in a fresh kernel, from its folder (where
# JupyterLab starts it), as Run All would. Prints one JSON line per notebook.
_RUN_NOTEBOOKS = """
import json, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

for path in map(Path, sys.argv[1:]):
    nb = nbformat.read(path, as_version=4)
    start, failed = time.perf_counter(), None
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as exc:
        failed = str(exc)[-3000:]
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = lambda c: c.metadata.get("tags", [])
    errors = lambda c: [f"{o.ename}: {o.evalue}" for o in c.get("outputs", []) if o.output_type == "error"]
    print(json.dumps({"chapter": path.stem, "seconds": round(time.perf_counter() - start, 1), "failed": failed,
                      "cells": len(nb.cells), "code": len(code),
                      "errors": [e for c in code if "raises-exception" not in tags(c) for e in errors(c)],
                      "demonstrated": [bool(errors(c)) for c in code if "raises-exception" in tags(c)],
                      "hidden_without_output": sum(1 for c in code if c.metadata.get("jupyter", {}).get("source_hidden")
                                                   and not c.get("outputs"))}), flush=True)
"""


def test_every_reader_notebook_runs_in_the_binder_kernel(binder_env):
    """Every chapter's reader's notebook, without the cells the page hides, runs from top to bottom
    in the Binder venv's kernel: no error output but the errors it demonstrates, and every cell
    whose code is collapsed (the page shows only its output) shows an output. Two processes, one
    per CI core, each running its share of the chapters one after the other."""
    chapters = [c for c in notebook_files() if c not in RUN_ALL]  # those two run in JupyterLab below
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TINYFORMER_BOOK", "JUPYTER"))},
           "MPLBACKEND": "module://matplotlib_inline.backend_inline", "OMP_NUM_THREADS": "1"}
    shares = [chapters[0::2], chapters[1::2]]
    procs = [subprocess.Popen([binder_env / "bin" / "python", "-c", _RUN_NOTEBOOKS, *(str(NOTEBOOKS / f"{c}.ipynb") for c in share)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for share in shares if share]
    results = {}
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        for line in out.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                results[record["chapter"]] = record
    print("\nreader's notebooks run with nbclient:", json.dumps(results))
    assert sorted(results) == sorted(chapters)
    for name, record in results.items():
        assert record["failed"] is None and not record["errors"], f"{name}: {record['errors'] or record['failed']}"
        assert all(record["demonstrated"]), f"{name}: a cell tagged raises-exception raised nothing"
        assert record["hidden_without_output"] == 0, f"{name}: a collapsed cell shows nothing: tag it remove-cell"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(binder_env, tmp_path_factory):
    """JupyterLab from the Binder venv, with fresh config/data/runtime folders (no saved
    workspace, nothing from the developer's home). Always stopped, whatever the test did."""
    home = tmp_path_factory.mktemp("jupyter-home")
    # Every cell rendered (no windowing), so the test reads every cell's text as shown.
    tracker = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), "tinyformer-test-token"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TINYFORMER_BOOK", "JUPYTER"))},
           "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    log = (home / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [binder_env / "bin" / "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--allow-root",
         "--LabApp.expose_app_in_browser=True"],  # window.jupyterapp: read cells without scrolling
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (home / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("TINYFORMER_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


# The open notebook, read from JupyterLab's own model: with windowing, cells off screen are not
# in the DOM, so counting DOM nodes would depend on the window size.
_NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const nb = panel && panel.content;
  if (!nb || !nb.model) return null;
  const cells = [];
  for (let i = 0; i < nb.model.cells.length; i++) {
    const c = nb.model.cells.get(i);
    const outputs = [];
    if (c.type === 'code') for (let j = 0; j < c.outputs.length; j++) outputs.push(c.outputs.get(j).toJSON());
    cells.push({type: c.type, count: c.type === 'code' ? c.executionCount : null, outputs: outputs,
                tags: c.getMetadata('tags') || []});
  }
  return {widget: panel.constructor.name, isNotebook: panel.node.classList.contains('jp-NotebookPanel'),
          path: panel.context.path,
          kernel: panel.sessionContext.session ? panel.sessionContext.session.kernel.status : 'none', cells: cells};
}"""


def _reader_cells(name: str) -> list[str]:
    import nbformat

    return [c.cell_type for c in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells]


def _open_launch_path(page, base: str, token: str, urlpath: str, name: str) -> dict:
    """Open what the launch button opens and wait until every cell is loaded and every Markdown
    cell rendered; returns the notebook's state."""
    expected = _reader_cells(name)
    page.goto(f"{base}/{urlpath}?reset&token={token}")  # reset: a fresh workspace, as a new Binder session
    # The notebook at that path is the current one (JupyterLab may also restore, behind it, what
    # the previous visit left open). The panel shows one empty cell until the file's content has
    # loaded: wait for the content.
    path = urlpath.split("/tree/", 1)[1]
    page.wait_for_function("() => { const p = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                           f" return p && p.context && p.context.path === {json.dumps(path)} && p.context.isReady"
                           f" && p.content.model && p.content.model.cells.length === {len(expected)}; }}",
                           timeout=90_000)
    markdown = expected.count("markdown")
    page.wait_for_function("() => { const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell')];"
                           f" return cells.length === {markdown} && cells.every(c => c.classList.contains('jp-mod-rendered')"
                           " && c.innerText.trim().length > 0); }",
                           timeout=60_000)
    assert page.locator(".jp-FileEditor:visible").count() == 0, f"{name} opened in the text editor"
    state = page.evaluate(_NOTEBOOK_STATE)
    assert state["isNotebook"], state["widget"]
    assert [c["type"] for c in state["cells"]] == expected, f"{name}: the notebook's cells differ from the reader's notebook"
    return state


def _notes_sentences(name: str) -> list[str]:
    """The speaker notes' sentences (markup removed) that the page itself does not say."""
    import jupytext

    def prose(text):
        return re.sub(r"\s+", " ", re.sub(r"\{[a-z:]+\}`[^`]*`|\$[^$]*\$|[*_`]", "", text)).strip()

    cells = jupytext.read(ROOT / "book" / f"{name}.md", fmt="md:myst").cells
    notes = [c for c in cells if c.metadata.get("slideshow", {}).get("slide_type") == "notes"]
    page = prose("\n".join(c.source for c in cells if c.cell_type == "markdown" and c not in notes))
    return [s for n in notes for s in re.split(r"(?<=[.?!])\s", prose(n.source)) if len(s) > 30 and s not in page]


def test_every_launch_path_shows_the_page_not_its_source(jupyterlab, browser):
    """For every chapter, what JupyterLab shows at the launch button's path: the reader's notebook,
    its Markdown rendered by jupyterlab-myst with no speaker notes, no raw MyST, every citation
    resolved and every admonition rendered."""
    base, token = jupyterlab
    keys = list(reader_notebook.read_bibliography(ROOT / "book" / "references.bib"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    checked = {}
    try:
        for name, urlpath in _launch_paths().items():
            state = _open_launch_path(page, base, token, urlpath, name)
            text = "\n".join(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell").all_inner_texts())
            for raw in (":::", "{cite", "{doc}", "{glue", "{claim}", "+++", "```{"):
                assert raw not in text, f"{name}: {raw!r} shows in JupyterLab"
            unresolved = [k for k in keys if k in text]
            assert not unresolved, f"{name}: unresolved citations {unresolved}"
            notes = [s for s in _notes_sentences(name) if s in re.sub(r"\s+", " ", text)]
            assert not notes, f"{name}: speaker notes show: {notes[:2]}"
            if name != toc_files()[0]:  # the chapters (not the home page) open with their objectives
                assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .myst-admonition-header-text", has_text="Learning objectives").count() == 1
            checked[name] = len(state["cells"])
    finally:
        page.close()
    print("\nchapters opened in JupyterLab (cells):", checked)


@pytest.mark.parametrize("chapter", RUN_ALL)
def test_run_all_in_jupyterlab(jupyterlab, browser, chapter):
    """A reader's Run All on the launch button's notebook: every cell runs, figures appear, the only
    errors are those the chapter demonstrates (tagged raises-exception), after which Run All goes on."""
    base, token = jupyterlab
    urlpath = _launch_paths()[chapter]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{getattr(e, 'stack', '')}"[:1500]))
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        _open_launch_path(page, base, token, urlpath, chapter)
        page.wait_for_function("() => { const p = window.jupyterapp.shell.currentWidget;"
                               " return p.sessionContext.session && p.sessionContext.session.kernel"
                               " && p.sessionContext.session.kernel.status === 'idle'; }", timeout=120_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(
            "() => { const nb = window.jupyterapp.shell.currentWidget.content.model; let done = true;"
            " for (let i = 0; i < nb.cells.length; i++) { const c = nb.cells.get(i);"
            "   if (c.type === 'code' && !c.executionCount) done = false; }"
            " return done && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'; }",
            timeout=300_000, polling=1000)
        state = page.evaluate(_NOTEBOOK_STATE)
        failures = [o for c in state["cells"] if "raises-exception" not in c["tags"] for o in c["outputs"]
                    if o["output_type"] == "error"]
        assert not failures, f"{failures[0]['ename']}: {failures[0]['evalue']}"
        demonstrated = [c for c in state["cells"] if "raises-exception" in c["tags"]]
        assert all(any(o["output_type"] == "error" for o in c["outputs"]) for c in demonstrated)
        assert chapter != "tokens" or demonstrated, "tokens demonstrates no error: pick a chapter that does"
        images = [i for i, c in enumerate(state["cells"]) if any("image/png" in o.get("data", {}) for o in c["outputs"])]
        assert images, "no figure was drawn"
        # JupyterLab 4.6's cell toolbar measures a Markdown cell's rendered node and finds none where
        # jupyterlab-myst renders the cell (TypeError in _markdownOverlapsToolbar); harmless for a
        # reader (the toolbar still shows). Every other page error fails the test.
        errors = [e for e in errors if "_markdownOverlapsToolbar" not in e]
        assert not errors, errors  # opening and running the chapter raised nothing else in the page

        # The figure is on screen as an image, not only in the model.
        page.evaluate(f"() => window.jupyterapp.shell.currentWidget.content.scrollToItem({images[-1]}, 'center')")
        page.wait_for_function("() => [...document.querySelectorAll('.jp-RenderedImage img')]"
                               ".some(img => img.complete && img.naturalWidth > 100)", timeout=30_000)
        page.screenshot(path=str(SHOTS / f"{chapter}-figure.png"))
        page.evaluate("() => window.jupyterapp.shell.currentWidget.content.scrollToItem(0, 'start')")
        time.sleep(0.5)
        page.screenshot(path=str(SHOTS / f"{chapter}-top.png"))
    finally:
        page.close()
