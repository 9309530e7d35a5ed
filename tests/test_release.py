"""`python3 tasks.py release X.Y.Z`: editions at their own addresses on the publish branch.

The end-to-end test releases 1.0.0, changes a chapter, releases 1.1.0, into a local bare
repository, and serves what was pushed over HTTP. It does not build the book twice (two strict
builds would add ~8 minutes to CI): it publishes the session's shared strict build
(tests/site_build.py) through release's --html option, with the edition's text (its number, date
and chapter change) written in, standing in for the build of each release commit. That the real
release path builds strictly, and that --html refuses a build of anything else, are tested
separately; that a build stamps its own edition into its pages is tested on the shared build.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from pybtex.database import parse_string

from site_build import HTML, build_site
from book_colab import PUBLISH_BRANCH  # in _ext/, which site_build puts on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402
from conftest import Built, run_tasks  # noqa: E402  (a stand-in build raises Built)

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org"}
NEW_SENTENCE = "A sentence that edition 1.1.0 added to this chapter."


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def git_env(monkeypatch):
    for key in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(key)
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)


def release(capsys, *args):
    """Run `tasks.py release ARGS` in-process: (exit status or "built", stdout, stderr)."""
    return run_tasks(capsys, "release", *args)


def _point_tasks_at(repo: Path, monkeypatch) -> None:
    monkeypatch.setattr(tasks, "ROOT", repo)
    monkeypatch.setattr(tasks, "HTML", repo / "_build" / "html")
    monkeypatch.setattr(tasks, "BIN", Path(sys.executable).parent)  # ghp-import of the venv running the tests


# ------------------------------------------------------------------ release 1.0.0, then 1.1.0


def edition_html(shared: Path, out: Path, repo: Path, new_sentence: bool) -> Path:
    """The shared strict build as the build of ``repo``'s release commit would be: its edition
    number and date written in where the build wrote its own, edition.json naming the commit,
    and (``new_sentence``) the chapter change of the second edition."""
    stamp = json.loads((shared / "edition.json").read_text())
    version = (repo / "VERSION").read_text().strip()
    date = tasks._cff_field("date-released", (repo / "CITATION.cff").read_text())
    shutil.copytree(shared, out)
    for path in out.rglob("*"):
        # the pages, the notebooks, and Sphinx's DOCUMENTATION_OPTIONS.VERSION (the banner compares it)
        if (path.suffix in (".html", ".ipynb") or path.name == "documentation_options.js") and path.is_file():
            text = path.read_text(encoding="utf-8")
            text = text.replace(stamp["version"], version).replace(stamp["date"], date)
            if new_sentence and path == out / "masks.html":
                text = re.sub(r"(<article[^>]*>)", rf"\1<p>{NEW_SENTENCE}</p>", text, count=1)
            path.write_text(text, encoding="utf-8")
    commit = git("rev-parse", "HEAD", cwd=repo).strip()
    # The shared build ran `jupyter-book build book/ -W --keep-going` and passed (asserted by the
    # caller); a no-change rebuild of it reads no page, so its own stamp may say "not strict".
    (out / "edition.json").write_text(json.dumps({**stamp, "version": version, "date": date, "commit": commit,
                                                  "clean": True, "strict": True}))
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def fetch(base: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def documentation_options(html: str) -> dict[str, str]:
    """What pydata-sphinx-theme's script reads: the switcher's JSON address, the edition it marks
    as current, and whether an older edition shows the banner."""
    return dict(re.findall(r"DOCUMENTATION_OPTIONS\.(theme_switcher_json_url|theme_switcher_version_match|"
                           r"show_version_warning_banner) =\s*'?([^';\n]*)'?;", html))


def chapter_bibtex(html: str) -> dict:
    entry = BeautifulSoup(html, "html.parser").select_one("#cite-this-chapter pre").get_text()
    (parsed,) = parse_string(entry, "bibtex").entries.values()
    return parsed.fields


@pytest.mark.book
def test_release_two_editions_into_a_bare_repository(tmp_path, git_env, monkeypatch, capsys):
    result = build_site()
    assert result["returncode"] == 0, result["log"][-4000:]
    repo = tmp_path / "project"
    git("clone", "-q", str(ROOT), str(repo), cwd=tmp_path)
    site = tmp_path / "site.git"
    git("init", "--bare", "-q", str(site), cwd=tmp_path)
    _point_tasks_at(repo, monkeypatch)

    # 1.0.0: the release commit and tag, then the stand-in for its build is published.
    assert release(capsys, "1.0.0", "--prepare", "--remote", str(site))[0] == 0
    status, out, err = release(capsys, "1.0.0", "--remote", str(site), "--html",
                               str(edition_html(HTML, tmp_path / "html-1.0.0", repo, new_sentence=False)))
    assert status == 0, out[-3000:] + err
    first = tmp_path / "first"
    first.mkdir()
    subprocess.run(f"git archive {PUBLISH_BRANCH} | tar -x -C {first}", shell=True, cwd=site, check=True)

    # A chapter changes; 1.1.0.
    masks = repo / "book" / "masks.md"
    masks.write_text(masks.read_text() + f"\n{NEW_SENTENCE}\n")
    git("commit", "-qam", "masks: one more sentence", cwd=repo)
    assert release(capsys, "1.1.0", "--prepare", "--remote", str(site))[0] == 0
    status, out, err = release(capsys, "1.1.0", "--remote", str(site), "--html",
                               str(edition_html(HTML, tmp_path / "html-1.1.0", repo, new_sentence=True)))
    assert status == 0, out[-3000:] + err

    # The source: one place for the version, CITATION.cff agreeing, the changelog, the tags.
    assert (repo / "VERSION").read_text() == "1.1.0\n"
    assert tasks._cff_field("version", (repo / "CITATION.cff").read_text()) == "1.1.0"
    changelog = (repo / "CHANGELOG.md").read_text()
    assert changelog.index("## 1.1.0 (") < changelog.index("## 1.0.0 (")  # newest first
    assert "- masks: one more sentence" in changelog.split("## 1.0.0")[0]
    assert git("tag", "--list", "v*", cwd=repo).split() == ["v1.0.0", "v1.1.0"]
    assert git("status", "--porcelain", cwd=repo) == ""

    # What was pushed, served as a web server would.
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(f"git archive {PUBLISH_BRANCH} | tar -x -C {served}", shell=True, cwd=site, check=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        # Every file 1.0.0 was published with is there, byte for byte, and nothing was added to it.
        old = {p.relative_to(first): p.read_bytes() for p in (first / "1.0.0").rglob("*") if p.is_file()}
        now = {p.relative_to(served): p.read_bytes() for p in (served / "1.0.0").rglob("*") if p.is_file()}
        assert len(old) > 100 and {p.relative_to(first) for p in first.rglob("*") if p.is_file()} > set(old)
        assert now == {Path(p): data for p, data in old.items()}

        # Both editions are served: each chapter as its edition wrote it.
        pages = {}
        for folder in ("1.0.0", "1.1.0", "latest"):
            status, body = fetch(base, f"{folder}/masks.html")
            assert status == 200, folder
            pages[folder] = body.decode()
        assert NEW_SENTENCE not in pages["1.0.0"] and NEW_SENTENCE in pages["1.1.0"]
        assert pages["latest"] == pages["1.1.0"]

        # The switcher: each page names its own edition and finds the list at the site's root,
        # which names both, the newest preferred (an older edition's pages show the banner).
        versions_urls = set()
        for folder, edition in (("1.0.0", "1.0.0"), ("1.1.0", "1.1.0"), ("latest", "1.1.0")):
            options = documentation_options(pages[folder])
            assert options["theme_switcher_version_match"] == edition
            assert options["show_version_warning_banner"] == "true"
            versions_urls.add(urllib.parse.urljoin(f"{base}{folder}/", options["theme_switcher_json_url"]))
        assert versions_urls == {f"{base}versions.json"}
        versions = json.loads(fetch(base, "versions.json")[1])
        assert [v["version"] for v in versions] == ["1.1.0", "1.0.0"]
        assert [v["preferred"] for v in versions] == [True, False]
        for entry in versions:  # each entry's link, from a page of another edition, is that edition's page
            url = urllib.parse.urljoin(f"{base}1.0.0/masks.html", entry["url"] + "masks.html")
            assert url == f"{base}{entry['version']}/masks.html" and fetch(url, "")[0] == 200
            assert entry["address"] == f"https://tinyformer.github.io/tinyformer/{entry['version']}/"

        # The root leads to the newest edition.
        root = fetch(base, "")[1].decode()
        target = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', root).group(1)
        assert urllib.parse.urljoin(base, target) == f"{base}1.1.0/"
        assert fetch(base, "1.1.0/")[0] == 200

        # The 1.0.0 BibTeX address serves the 1.0.0 text.
        cited = chapter_bibtex(pages["1.0.0"])
        assert cited["version"] == "1.0.0"
        path = cited["url"].removeprefix("https://tinyformer.github.io/tinyformer/")
        assert path == "1.0.0/masks.html"
        status, body = fetch(base, path)
        assert status == 200 and NEW_SENTENCE not in body.decode()
        assert chapter_bibtex(body.decode())["version"] == "1.0.0"
        assert chapter_bibtex(pages["1.1.0"])["url"].endswith("/1.1.0/masks.html")
        # Colab: each edition's notebooks in its own folder of the branch, installing its own tag.
        colab = BeautifulSoup(pages["1.0.0"], "html.parser").find("a", href=re.compile("colab.research.google.com"))
        notebook = colab["href"].split(f"/blob/{PUBLISH_BRANCH}/", 1)[1]
        assert notebook == "1.0.0/notebooks/masks.ipynb"
        assert "@v1.0.0" in fetch(base, notebook)[1].decode()
        assert fetch(base, "1.0.0/slides/masks.slides.html")[0] == 200
    finally:
        httpd.shutdown()
        httpd.server_close()

    # The same version again: one clear line, nothing changed.
    tip = git("rev-parse", PUBLISH_BRANCH, cwd=site)
    status, out, err = release(capsys, "1.1.0", "--remote", str(site))
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: 1.1.0 is already released"), err
    assert git("rev-parse", PUBLISH_BRANCH, cwd=site) == tip


# ------------------------------------------------------------------ refused before anything is written


@pytest.fixture
def project(tmp_path, git_env, monkeypatch):
    """A small repository with what release reads and writes (tasks.py, pyproject.toml, the
    publish branch's name, VERSION, CITATION.cff), tasks.py pointed at it."""
    repo = tmp_path / "project"
    (repo / "_ext").mkdir(parents=True)
    for name in ("tasks.py", "pyproject.toml", "_ext/book_colab.py", "VERSION", "CITATION.cff", ".gitignore"):
        (repo / name).write_bytes((ROOT / name).read_bytes())
    (repo / "VERSION").write_text("0.1.0\n")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "source", cwd=repo)
    _point_tasks_at(repo, monkeypatch)
    return repo


def test_release_builds_strictly_from_scratch(project, monkeypatch, capsys):
    """Without --html, release runs the strict build (`jupyter-book build book/ -W`, after
    emptying _build/html) on the release commit."""
    commands = []
    monkeypatch.setattr(tasks, "setup", lambda: None)
    monkeypatch.setattr(tasks, "check_toc_link", lambda: None)

    def run(*cmd, **kwargs):
        commands.append([str(c) for c in cmd])
        assert git("describe", "--exact-match", "HEAD", cwd=project).strip() == "v1.0.0"  # the release commit
        raise Built

    monkeypatch.setattr(tasks, "run", run)
    stale = project / "_build" / "html" / "stale.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    status, out, err = release(capsys, "1.0.0", "--remote", str(project / "nowhere.git"), "--no-push")
    assert status == "built", out + err
    assert [c[1:] for c in commands] == [["build", "book/", "-W", "--keep-going"]]
    assert commands[0][0].endswith("jupyter-book")
    assert not stale.exists()


def test_release_refuses_a_dirty_tree_an_old_version_and_a_stale_build(project, tmp_path, capsys):
    def refused(*args):
        status, out, err = release(capsys, *args, "--no-push")
        assert status == 2 and err.count("\n") == 1 and err.startswith("error: "), (status, out, err)
        return err

    (project / "VERSION").write_text("9.9.9\n")
    assert "uncommitted changes (1, first: M VERSION)" in refused("1.0.0")
    git("checkout", "VERSION", cwd=project)
    assert "is not a version X.Y.Z" in refused("1.0")
    assert release(capsys, "1.0.0", "--prepare", "--no-push")[0] == 0
    assert git("tag", "--list", cwd=project).split() == ["v1.0.0"]
    assert "0.9.0 is not newer than 1.0.0, the newest release" in refused("0.9.0")
    assert "1.0.0 is not newer" not in refused("1.0.0", "--html", str(tmp_path))  # continues 1.0.0, then:
    html = tmp_path / "html"
    html.mkdir()
    (html / "edition.json").write_text(json.dumps({"version": "0.1.0", "date": "2026-11-22", "commit": "abc",
                                                   "clean": False, "strict": False}))
    err = refused("1.0.0", "--html", str(html))
    for problem in ("it is version 0.1.0, not 1.0.0", "not the release commit", "uncommitted changes",
                    "not built strictly"):
        assert problem in err
    assert git("branch", "--list", PUBLISH_BRANCH, cwd=project) == ""  # nothing was published


def test_plain_publish_refuses_a_branch_that_holds_editions(project, capsys, monkeypatch):
    git("checkout", "-q", "--orphan", PUBLISH_BRANCH, cwd=project)
    git("rm", "-rq", "--cached", ".", cwd=project)
    (project / "versions.json").write_text("[]")
    git("add", "versions.json", cwd=project)
    git("commit", "-qm", "site", cwd=project)
    git("checkout", "-qf", "main", cwd=project)
    monkeypatch.setattr(sys, "argv", ["tasks.py", "publish", "--no-push"])
    with pytest.raises(SystemExit) as exc:
        tasks.main()
    assert exc.value.code == 2
    assert "holds released editions" in capsys.readouterr().err


# ------------------------------------------------------------------ each build stamps its own edition


@pytest.mark.book
def test_the_build_stamps_its_edition_from_version(site_edition):
    version, html = site_edition
    assert json.loads((HTML / "edition.json").read_text())["version"] == version
    assert documentation_options(html)["theme_switcher_version_match"] == version
    assert chapter_bibtex(html)["url"] == f"https://tinyformer.github.io/tinyformer/{version}/masks.html"
    page = BeautifulSoup(html, "html.parser")
    assert page.select_one(".version-switcher__button") is not None  # in every page's header
    cite = BeautifulSoup((HTML / "cite.html").read_text(), "html.parser").select_one("pre").get_text()
    (entry,) = parse_string(cite, "bibtex").entries.values()
    assert entry.fields["version"] == version and entry.fields["url"].endswith(f"/tinyformer/{version}/")


@pytest.fixture
def site_edition():
    result = build_site()
    assert result["returncode"] == 0, result["log"][-4000:]
    return (ROOT / "VERSION").read_text().strip(), (HTML / "masks.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------ Zenodo and CITATION.cff


def test_zenodo_metadata_agrees_with_citation_cff_and_names_no_version():
    """Zenodo's GitHub integration reads .zenodo.json (before CITATION.cff) when a GitHub release is
    made, and takes the version from the release: a version here would be a second place to keep."""
    import yaml

    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert "version" not in zenodo and "publication_date" not in zenodo
    assert zenodo["title"] == cff["title"]
    assert [c["name"] for c in zenodo["creators"]] == [a["name"] for a in cff["authors"]]
    assert zenodo["upload_type"] == "software" and zenodo["license"] == cff["license"].lower()
    assert str(cff["version"]) == (ROOT / "VERSION").read_text().strip()
