"""Open in Colab: each chapter as a notebook on the published branch.

Colab opens only ``.ipynb`` files from a GitHub repository, and the chapters are MyST
Markdown. So the build turns each chapter's source into a notebook with Jupytext (the prose
and code cells as written; no outputs, the reader runs them), puts an install cell first,
and writes it to ``_build/html/notebooks/<chapter>.ipynb``. ``python3 tasks.py publish``
pushes ``_build/html`` to ``PUBLISH_BRANCH`` (``gh-pages``), so the notebooks are on that branch,
where the chapter's "Colab" launch button points.
"""

from __future__ import annotations

import re
from pathlib import Path


PUBLISH_BRANCH = "gh-pages"  # where the site is published; `python3 tasks.py publish` reads it (publish_branch)
NOTEBOOK_DIR = "notebooks"  # under _build/html, so under the published branch's root
COLAB = "https://colab.research.google.com/github"


def github_repo(repository_url: str) -> tuple[str, str]:
    """(owner, name) of a GitHub repository URL; Colab opens notebooks from GitHub only."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", repository_url)
    if not match:
        raise ValueError(f"repository url {repository_url!r} is not https://github.com/<owner>/<repo>: "
                         f"Colab opens notebooks from GitHub only")
    return match.group(1), match.group(2)


def colab_url(repository_url: str, chapter: str, branch: str = PUBLISH_BRANCH, edition: str | None = None) -> str:
    """With ``edition`` (X.Y.Z), the notebook in that edition's folder of the publish branch,
    where `python3 tasks.py release` puts each edition and never changes it afterwards."""
    owner, repo = github_repo(repository_url)
    folder = f"{edition}/{NOTEBOOK_DIR}" if edition else NOTEBOOK_DIR
    return f"{COLAB}/{owner}/{repo}/blob/{branch}/{folder}/{chapter}.ipynb"


def install_source(repository_url: str, ref: str = "main") -> str:
    """The notebook's first cell: the package the chapter imports, from the repository at ``ref``
    (an edition's tag, vX.Y.Z: its notebooks install the library that edition was built with),
    with its pinned dependencies (torch included: the version the book is tested with), and myst-nb, whose ``glue`` the chapters call."""
    github_repo(repository_url)  # a clear error for a non-GitHub URL
    return (
        "# Colab: install tinyformer (the package this chapter builds and imports) from its repository.\n"
        "# It pins the PyTorch version the book is tested with; this takes a minute or two.\n"
        f'%pip install --quiet "tinyformer @ git+{repository_url.rstrip("/")}@{ref}" "myst-nb>=1.1"'
    )


def chapter_notebook(source: Path, repository_url: str, ref: str = "main"):
    """A chapter's MyST source as an nbformat notebook for Colab: its cells as written, minus
    the slides' speaker notes (they are for the presenter), after an install cell."""
    import jupytext
    import nbformat

    nb = jupytext.read(source, fmt="md:myst")
    nb.cells = [c for c in nb.cells if c.metadata.get("slideshow", {}).get("slide_type") != "notes"]
    install = nbformat.v4.new_code_cell(install_source(repository_url, ref), metadata={"tags": ["colab-install"]})
    nb.cells.insert(0, install)
    nb.metadata.pop("jupytext", None)  # a plain notebook in Colab, not paired with a text file
    nb.metadata["colab"] = {"name": f"{source.stem}.ipynb", "provenance": []}
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.validate(nb)
    return nb


def write_notebooks(book_dir: Path, html_dir: Path, chapters: list[str], repository_url: str,
                    keys_dir: Path | None = None, ref: str = "main") -> list[Path]:
    """Write ``<html_dir>/notebooks/<chapter>.ipynb`` for every chapter; returns the paths.

    With ``keys_dir``, a notebook whose chapter source, repository and generator are unchanged
    since it was written (a key file there says so) is kept as it is."""
    import hashlib

    import nbformat

    out = Path(html_dir) / NOTEBOOK_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters:
        source = Path(book_dir) / f"{chapter}.md"
        path = out / f"{chapter}.ipynb"
        key = hashlib.sha256(source.read_bytes() + Path(__file__).read_bytes() + repository_url.encode()
                             + ref.encode()).hexdigest()
        key_file = Path(keys_dir) / f"colab-{chapter}.key" if keys_dir is not None else None
        if key_file is None or not (path.exists() and key_file.exists() and key_file.read_text() == key):
            nbformat.write(chapter_notebook(source, repository_url, ref), path)
            if key_file is not None:
                key_file.parent.mkdir(parents=True, exist_ok=True)
                key_file.write_text(key)
        written.append(path)
    return written
