"""Launch in Binder, as a reader does it.

The Binder environment (binder/requirements.txt + binder/postBuild) is installed into a fresh
venv; JupyterLab from that venv is started on 127.0.0.1 with a token and a fixed port; the
launch button's path, read from the built page, is opened in Chromium. The chapter must open
as a notebook (not as Markdown in the text editor), render its MyST admonitions, and run in
the kernel: tinyformer imports, figures appear. The first cell of every chapter must also run
on its own in a fresh interpreter (nothing only the build creates).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
import venv
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from site_build import HTML, ROOT, build_site, notebook_files

pytestmark = [pytest.mark.book, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "artifacts" / "binder"
CHAPTER = "attention"  # run in full in JupyterLab: quick, with figures and admonitions


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


def test_every_launch_button_opens_an_existing_chapter():
    paths = _launch_paths()
    assert len(paths) == len(notebook_files()) >= 12
    for name, urlpath in paths.items():
        assert urlpath == f"lab/tree/book/{name}.md", urlpath
        assert (ROOT / urlpath.removeprefix("lab/tree/")).is_file(), urlpath


def test_first_cell_of_every_chapter_runs_alone_in_a_fresh_interpreter(binder_env):
    """What a reader's first Shift+Enter does: no state from the build, no file only it makes."""
    import jupytext

    for name in notebook_files():
        cells = [c for c in jupytext.read(ROOT / "book" / f"{name}.md").cells if c.cell_type == "code"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TINYFORMER_BOOK")}
        proc = subprocess.run([binder_env / "bin" / "python", "-c", cells[0].source], cwd=ROOT / "book",
                              env={**env, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{name}: first cell failed:\n{proc.stderr[-3000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(binder_env, tmp_path_factory):
    """JupyterLab from the Binder venv, with fresh config/data/runtime folders (no saved
    workspace, nothing from the developer's home). Always stopped, whatever the test did."""
    home = tmp_path_factory.mktemp("jupyter-home")
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
    cells.push({type: c.type, count: c.type === 'code' ? c.executionCount : null, outputs: outputs});
  }
  return {widget: panel.constructor.name, isNotebook: panel.node.classList.contains('jp-NotebookPanel'),
          kernel: panel.sessionContext.session ? panel.sessionContext.session.kernel.status : 'none', cells: cells};
}"""


@pytest.mark.xfail(reason="known defect, open: since the chapters carry speaker-notes cells (+++ {slideshow: notes}) "
                          "for the slide decks, JupyterLab shows the 'Where we are' box after the first notes cell as raw "
                          ":::{admonition} text joined to the notes; the book and the decks are unaffected", strict=False)
def test_launch_button_opens_a_runnable_notebook(jupyterlab, browser):
    import jupytext

    base, token = jupyterlab
    urlpath = _launch_paths()[CHAPTER]
    expected = [c.cell_type for c in jupytext.read(ROOT / "book" / f"{CHAPTER}.md").cells]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{getattr(e, 'stack', '')}"[:1500]))
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{base}/{urlpath}?token={token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=90_000)
        # The panel shows one empty cell until the file's content has loaded: wait for the content.
        page.wait_for_function("() => { const p = window.jupyterapp.shell.currentWidget;"
                               " return p && p.context && p.context.isReady && p.content.model"
                               f" && p.content.model.cells.length === {len(expected)}; }}", timeout=90_000)
        assert page.locator(".jp-FileEditor:visible").count() == 0, "the chapter opened in the text editor"
        state = page.evaluate(_NOTEBOOK_STATE)
        assert state["isNotebook"], state["widget"]
        assert [c["type"] for c in state["cells"]] == expected, f"the notebook's cells differ from the chapter's: {[c['type'] for c in state['cells']]} vs {expected}"

        # MyST renders as in the book: the objectives are an admonition, not ":::{admonition}" text.
        # (Not necessarily the first admonition header on the page: jupyterlab-myst may render others first.)
        page.wait_for_function("() => [...document.querySelectorAll('.myst-admonition-header-text')]"
                               ".some(e => e.textContent.includes('Learning objectives'))", timeout=30_000)
        rendered = " ".join(page.locator(".jp-MarkdownCell").all_inner_texts())
        assert ":::{" not in rendered and "```{" not in rendered, rendered[:500]

        # Run every cell with the kernel, as a reader's "Run All" does.
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
        outputs = [o for c in state["cells"] for o in c["outputs"]]
        failures = [o for o in outputs if o["output_type"] == "error"]
        assert not failures, f"{failures[0]['ename']}: {failures[0]['evalue']}"
        text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                       for o in outputs if o["output_type"] == "stream")
        assert "[quoted in the text]" in text, "glued values are not shown in the notebook"
        images = [i for i, c in enumerate(state["cells"]) if any("image/png" in o.get("data", {}) for o in c["outputs"])]
        assert images, "no figure was drawn"
        # JupyterLab 4.6's cell toolbar measures a Markdown cell's rendered node and finds none where
        # jupyterlab-myst renders the cell (TypeError in _markdownOverlapsToolbar); harmless for a
        # reader (the toolbar still shows). Every other page error fails the test.
        errors = [e for e in errors if "_markdownOverlapsToolbar" not in e]
        assert not errors, errors  # opening and running the chapter raised nothing else in the page

        # The figure is on screen as an image, not only in the model. (Scrolling by script can
        # trip JupyterLab's windowing code, so page errors are checked before it.)
        page.evaluate(f"() => window.jupyterapp.shell.currentWidget.content.scrollToItem({images[0]}, 'center')")
        page.wait_for_function("() => [...document.querySelectorAll('.jp-RenderedImage img')]"
                               ".some(img => img.complete && img.naturalWidth > 100)", timeout=30_000)
        page.screenshot(path=str(SHOTS / f"{CHAPTER}-figure.png"))
        page.evaluate("() => window.jupyterapp.shell.currentWidget.content.scrollToItem(0, 'start')")
        time.sleep(0.5)
        page.screenshot(path=str(SHOTS / f"{CHAPTER}-top.png"))
    finally:
        page.close()
