"""`python3 tasks.py publish` builds clean and pushes _build/html to the publish branch (gh-pages)."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from site_build import notebook_files
from book_colab import PUBLISH_BRANCH  # in _ext/, which site_build puts on sys.path

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.book


def git(*args, cwd, env=None):
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_publish_to_a_local_bare_repository(tmp_path):
    bare = tmp_path / "site.git"
    git("init", "--bare", "-q", str(bare), cwd=tmp_path)
    # Publish from a scratch repository (GIT_DIR), so the test never touches this checkout's branches.
    scratch = tmp_path / "scratch"
    git("init", "-q", str(scratch), cwd=tmp_path)
    stale = ROOT / "_build" / "html" / "stale-page-from-an-old-layout.html"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("old")
    env = {**os.environ, "GIT_DIR": str(scratch / ".git"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    proc = subprocess.run([sys.executable, str(ROOT / "tasks.py"), "publish", "--remote", str(bare)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = set(git("ls-tree", "-r", "--name-only", PUBLISH_BRANCH, cwd=bare).split())
    assert {".nojekyll", "intro.html", "attention.html", "_static/style.css"} <= files
    # The Colab buttons open notebooks on this branch, and the Slides buttons the decks.
    chapters = [f for f in notebook_files() if f != "intro"]
    assert {f"notebooks/{c}.ipynb" for c in chapters} <= files
    assert {f"slides/{c}.slides.html" for c in chapters} <= files
    assert {"_static/reveal.js/dist/reveal.js", "_static/reveal.js/plugin/notes/notes.js"} <= files
    notebook = nbformat.reads(git("show", f"{PUBLISH_BRANCH}:notebooks/attention.ipynb", cwd=bare), as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].source.count("%pip install") == 1
    assert not any(f.startswith("reports/") for f in files)
    assert "stale-page-from-an-old-layout.html" not in files
    assert not stale.exists()
