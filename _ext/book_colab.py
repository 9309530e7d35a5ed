"""Open in Colab: each chapter as a notebook on the published branch.

Colab opens only ``.ipynb`` files from a GitHub repository, and the chapters are MyST
Markdown. So after executing the chapters the build writes each one's reader's notebook
(reader_notebook.py: what the page shows, with the glued values of this build, an install
cell first, no outputs: the reader runs them) to ``_build/html/notebooks/<chapter>.ipynb``.
``python3 tasks.py publish`` pushes ``_build/html`` to ``PUBLISH_BRANCH`` (``gh-pages``), so the notebooks are on that branch,
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


def chapter_notebook(source: Path, repository_url: str, glue: dict | None = None, ref: str = "main"):
    """A chapter as Colab's notebook: the reader's notebook (reader_notebook.py, the one
    Binder opens too), written for Colab, with the values the build glued (``glue``); its
    install cell installs the library at ``ref`` (an edition's tag, vX.Y.Z: the library that
    edition was built with)."""
    github_repo(repository_url)  # a clear error for a non-GitHub URL
    import reader_notebook  # here, not at the top: tasks.py reads PUBLISH_BRANCH with plain Python

    site = reader_notebook.Site.from_repository()
    site.repository_url = repository_url.rstrip("/")
    site.ref = ref
    return reader_notebook.reader_notebook(Path(source), "colab", site=site, glue=glue)


def write_notebooks(book_dir: Path, html_dir: Path, chapters: list[str], repository_url: str,
                    keys_dir: Path | None = None, glue_dir: Path | None = None, ref: str = "main") -> list[Path]:
    """Write ``<html_dir>/notebooks/<chapter>.ipynb`` for every chapter; returns the paths.
    ``glue_dir`` holds the build's ``<chapter>.glue.json`` (MyST-NB's jupyter_execute folder).

    With ``keys_dir``, a notebook whose chapter source, glued values, repository and generator
    are unchanged since it was written (a key file there says so) is kept as it is."""
    import hashlib
    import json

    import nbformat

    out = Path(html_dir) / NOTEBOOK_DIR
    out.mkdir(parents=True, exist_ok=True)
    import reader_notebook

    site = reader_notebook.Site.from_repository()  # the titles, bibliography and addresses it links
    generator = b"".join((Path(__file__).parent / name).read_bytes()
                         for name in ("book_colab.py", "reader_notebook.py", "book_citation.py", "book_toc.py"))
    generator += json.dumps([site.cff, site.titles, site.bibliography], sort_keys=True, default=str).encode()
    written = []
    for chapter in chapters:
        source = Path(book_dir) / f"{chapter}.md"
        glue_file = Path(glue_dir) / f"{chapter}.glue.json" if glue_dir is not None else None
        glued = glue_file.read_bytes() if glue_file is not None and glue_file.exists() else b""
        path = out / f"{chapter}.ipynb"
        key = hashlib.sha256(source.read_bytes() + glued + generator + repository_url.encode() + ref.encode()).hexdigest()
        key_file = Path(keys_dir) / f"colab-{chapter}.key" if keys_dir is not None else None
        if key_file is None or not (path.exists() and key_file.exists() and key_file.read_text() == key):
            glue = json.loads(glued) if glue_dir is not None and glued else ({} if glue_dir is not None else None)
            nbformat.write(chapter_notebook(source, repository_url, glue, ref), path)
            if key_file is not None:
                key_file.parent.mkdir(parents=True, exist_ok=True)
                key_file.write_text(key)
        written.append(path)
    return written
