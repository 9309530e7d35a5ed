"""`python3 tasks.py publish` builds clean and pushes _build/html to the publish branch (gh-pages),
and refuses, before building, what would overwrite the wrong branch or push somewhere else than
it says. Every push goes to a bare repository under tmp_path."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from site_build import notebook_files
from book_colab import PUBLISH_BRANCH  # in _ext/, which site_build puts on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402
from conftest import Built, run_tasks  # noqa: E402  (a stand-in build raises Built)


def git(*args, cwd, env=None):
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.book
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


# ------------------------------------------- refused before building: wrong branch, wrong place

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A repository holding the project's source on its checked-out branch `main` (tasks.py,
    pyproject.toml, _ext/book_colab.py), with tasks.py pointed at it and the build replaced."""
    for key in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(key)
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    repo = tmp_path / "project"
    (repo / "_ext").mkdir(parents=True)
    for name in ("tasks.py", "pyproject.toml", "_ext/book_colab.py"):
        (repo / name).write_bytes((ROOT / name).read_bytes())
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "source", cwd=repo)
    monkeypatch.setattr(tasks, "ROOT", repo)

    def build(clean=False):
        raise Built

    monkeypatch.setattr(tasks, "build", build)
    return repo


def publish(capsys, *args):
    """Run `tasks.py publish ARGS` in-process: (exit status or "built", stdout + stderr)."""
    status, out, err = run_tasks(capsys, "publish", *args)
    return status, out + err


def test_publish_refuses_the_checked_out_branch_and_source_branches_even_when_forced(project, tmp_path, capsys):
    bare = tmp_path / "origin.git"
    git("init", "--bare", "-q", str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=project)
    # The command: ghp-import would make the local main one commit of HTML and force-push it.
    status, out = publish(capsys, "--remote", "origin", "--branch", "main")
    assert status == 2 and "error: --branch 'main' is the branch checked out here" in out and "gh-pages" in out
    assert "will force-push" not in out
    status, out = publish(capsys, "--remote", "origin", "--branch", "main", "--force-branch")
    assert status == 2 and "is the branch checked out here" in out
    # Not checked out, but holding the source: refused with or without the flag.
    git("switch", "-q", "-c", "work", cwd=project)
    status, out = publish(capsys, "--remote", "origin", "--branch", "main", "--force-branch")
    assert status == 2 and "branch 'main' holds this project's source (refs/heads/main has pyproject.toml)" in out
    # Only on the remote (a CI checkout on a detached HEAD): its remote-tracking branch says so.
    git("push", "-q", str(bare), "main:trunk", cwd=project)
    git("fetch", "-q", "origin", cwd=project)
    status, out = publish(capsys, "--remote", "origin", "--branch", "trunk", "--force-branch")
    assert status == 2 and "refs/remotes/origin/trunk has pyproject.toml" in out
    assert git("rev-parse", "main", cwd=project) == git("rev-parse", "work", cwd=project)  # main untouched


def test_publish_needs_force_branch_for_any_other_branch(project, capsys):
    remote = "https://github.com/owner/tinyformer.git"
    git("remote", "add", "origin", remote, cwd=project)
    for branch in ("master", "docs"):
        status, out = publish(capsys, "--branch", branch)
        assert status == 2 and f"--branch {branch!r} is not the publish branch {PUBLISH_BRANCH!r}" in out
        assert "--force-branch" in out
    status, out = publish(capsys, "--branch", "docs", "--force-branch")
    assert status == "built" and f"will force-push _build/html to branch 'docs' of origin (push URL {remote})" in out
    status, out = publish(capsys)
    assert status == "built" and f"to branch {PUBLISH_BRANCH!r} of origin" in out
    status, out = publish(capsys, "--no-push")
    assert status == "built" and f"to the local branch {PUBLISH_BRANCH!r} (no push)" in out


def test_publish_checks_and_announces_the_push_url_not_the_fetch_url(project, tmp_path, capsys):
    """A fork set up with `git remote set-url --push`: origin fetches from a hosted repository
    and pushes to another (here a folder). Publishing by default must look at where it pushes."""
    fork = tmp_path / "fork.git"
    git("init", "--bare", "-q", str(fork), cwd=tmp_path)
    hosted = "https://github.com/owner/tinyformer.git"
    git("remote", "add", "origin", hosted, cwd=project)
    git("remote", "set-url", "--push", "origin", str(fork), cwd=project)
    assert tasks.publish_target("origin") == ("origin", str(fork))
    status, out = publish(capsys)
    assert status == 2
    assert f"error: origin pushes to {fork} (its push URL; it fetches from {hosted}), not a hosted repository" in out
    status, out = publish(capsys, "--remote", "origin")
    assert status == "built" and f"of origin (push URL {fork})" in out and hosted not in out
    # Both hosted: the push URL is the one announced.
    git("remote", "set-url", "--push", "origin", "git@example.org:fork/tinyformer.git", cwd=project)
    assert tasks.publish_target(None) == ("origin", "git@example.org:fork/tinyformer.git")


def test_publish_pushes_where_it_announced(project, tmp_path, capsys, monkeypatch):
    """The whole push, with a stand-in site: ghp-import force-pushes to origin's push URL, and
    the repository origin fetches from is untouched."""
    upstream, fork = tmp_path / "upstream.git", tmp_path / "fork.git"
    for bare in (upstream, fork):
        git("init", "--bare", "-q", str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(upstream), cwd=project)
    git("remote", "set-url", "--push", "origin", str(fork), cwd=project)
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<p>site</p>")
    monkeypatch.setattr(tasks, "HTML", html)
    monkeypatch.setattr(tasks, "BIN", Path(sys.executable).parent)  # this environment's ghp-import
    monkeypatch.setattr(tasks, "build", lambda clean=False: None)
    status, out = publish(capsys, "--remote", "origin")
    assert status == 0, out
    assert f"of origin (push URL {fork})" in out
    assert git("ls-tree", "-r", "--name-only", PUBLISH_BRANCH, cwd=fork).split() == [".nojekyll", "index.html"]
    assert git("for-each-ref", cwd=upstream) == ""  # nothing was pushed where origin fetches from
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=project).strip() == "main"
    assert git("ls-tree", "--name-only", "main", cwd=project).split() == ["_ext", "pyproject.toml", "tasks.py"]
