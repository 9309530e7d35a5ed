#!/usr/bin/env python3
"""One entry point for maintainers; needs only Python 3.10+ to start.

    python3 tasks.py build      set up .venv (pinned), then build the site strictly into _build/html
    python3 tasks.py test       set up .venv (pinned), then run every test
    python3 tasks.py pdf        build (incremental), then print the whole book to _build/pdf/tinyformer.pdf
    python3 tasks.py publish    clean strict build, then push _build/html to gh-pages with ghp-import
                                (to origin only if its push URL is a hosted URL; otherwise --remote is
                                required; another branch needs --force-branch, and the branch checked
                                out or one that holds the project's source is always refused)
    python3 tasks.py release X.Y.Z [--html DIR]
                                an edition at its own address: sets VERSION (and CITATION.cff's version
                                and date), adds the CHANGELOG.md entry, commits and tags vX.Y.Z, builds
                                strictly, then adds X.Y.Z/ to the publish branch and updates latest/,
                                versions.json and the root's redirect, leaving older editions' files as
                                they are (checked before pushing). Refuses a dirty tree or a version
                                not newer than the newest release. --html DIR publishes a strict build
                                of this very release commit instead of building (its edition.json must
                                say so); --prepare stops after the tag, and `release X.Y.Z` run again
                                on that tag goes on from there. Same --remote / --no-push as publish
    python3 tasks.py vendor-ort [--version V]
                                refresh assets/vendor/onnxruntime-web/ from npm (maintainers only;
                                the files are committed, so building needs no npm)
    python3 tasks.py clean      remove _build/ (refused when _build is a symbolic link)

Set-up is skipped when .venv already matches pyproject.toml and constraints.txt; a .venv left
incomplete (an interrupted set-up: no working pip) is recreated. Ctrl-C anywhere prints one line
and exits 130.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
BUILD = ROOT / "_build"
HTML = BUILD / "html"
STAMP = VENV / ".tinyformer-setup"  # written last: present and current only after a complete set-up
# A branch whose tip holds any of these holds the project's source, not a published site.
SOURCE_MARKERS = ("pyproject.toml", "tasks.py", "tinyformer/__init__.py")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what it left behind."""


def fail(message: str) -> None:
    """One ``error: ...`` line and exit status 2, the CLIs' convention for a refused request."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def run(*cmd, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=kwargs.pop("cwd", ROOT), **kwargs)


def _setup_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt", "VERSION"):  # VERSION: the installed package's version
        if (ROOT / name).exists():
            digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def create_venv(path: Path) -> None:
    """Make a virtual environment with pip (a separate function so tests can replace it)."""
    venv.EnvBuilder(with_pip=True).create(path)


def venv_problem(venv_dir: Path = VENV) -> str | None:
    """Why the existing ``venv_dir`` cannot be installed into, or None if it can. A set-up
    stopped while the environment was being made (ensurepip) or while pip upgraded itself
    leaves a Python without pip, on which every later `pip install` fails."""
    python = venv_dir / PY.relative_to(VENV)
    if not python.exists():
        return f"it has no {python.relative_to(venv_dir)}"
    try:
        proc = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"its Python does not run: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        return f"its pip does not run: {last}"
    return None


def setup() -> None:
    """Create .venv and install tinyformer with the book and dev extras, pinned by constraints.txt.

    The stamp is written last, so a set-up stopped at any point is redone by the next run; an
    environment left without a working pip is recreated first."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python 3.10+ is needed, this is {sys.version.split()[0]}")
    fingerprint = _setup_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint and PY.exists():
        return
    try:
        if VENV.exists() or VENV.is_symlink():
            problem = venv_problem(VENV)
            if problem is not None:
                if VENV.is_symlink():
                    fail(f"{VENV} is incomplete ({problem}) and is a symbolic link: set-up does not delete "
                         f"through links; remove it (rm {VENV}) and run again")
                print(f"{VENV} is incomplete ({problem}; an interrupted set-up?): recreating it", flush=True)
                shutil.rmtree(VENV)
        if not PY.exists():
            print(f"creating {VENV}", flush=True)
            create_venv(VENV)
        run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(PY, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[book,dev]")
        STAMP.write_text(fingerprint)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while setting up {VENV}: the next run of setup, build or test "
                          f"finishes it (an incomplete environment is recreated)") from None


def check_toc_link() -> None:
    """`jupyter-book build book/` reads the TOC only as book/_toc.yml, a symbolic link to the
    top-level _toc.yml. A checkout without symbolic links (git on Windows without
    core.symlinks) has a one-line text file there instead: say so, not a YAML error."""
    link = ROOT / "book" / "_toc.yml"
    if not link.is_symlink() or link.resolve() != (ROOT / "_toc.yml").resolve():
        sys.exit("error: book/_toc.yml must be a symbolic link to ../_toc.yml; check out with symbolic links "
                 "(git config core.symlinks true) or make it: ln -sf ../_toc.yml book/_toc.yml")


def build(clean: bool = False) -> None:
    """Strict build: any Sphinx warning or cell error fails it."""
    setup()
    check_toc_link()
    if clean and HTML.exists():
        shutil.rmtree(HTML)  # keep _build/.jupyter_cache: it is keyed on code and package hash
    start = time.perf_counter()
    run(BIN / "jupyter-book", "build", "book/", "-W", "--keep-going")
    reports = HTML / "reports"
    if reports.exists() and any(reports.iterdir()):
        sys.exit(f"execution reports were written to {reports}: a cell failed")
    print(f"built {HTML} in {time.perf_counter() - start:.1f} s")


def pdf() -> None:
    """The whole book as one PDF, printed by Chromium (Debian's /usr/bin/chromium, through
    Playwright) from the built pages in TOC order: _ext/book_pdf.py. Builds first; a build with
    nothing changed only re-checks the pages (seconds)."""
    build()
    run(PY, ROOT / "_ext" / "book_pdf.py", HTML, BUILD / "pdf" / "tinyformer.pdf")


AXE = ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"


def test(pytest_args: list[str]) -> None:
    """Every test. The browser tests also need Debian's Chromium (/usr/bin/chromium) and
    axe-core; axe-core is fetched here when npm is available, Chromium is up to you
    (.ci/run installs it). Without them the browser tests are skipped."""
    setup()
    if not AXE.exists() and shutil.which("npm"):
        run("npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", "tests/.node", "axe-core@4.14.1")
    run(PY, "-m", "pytest", *pytest_args)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def _remote_url(remote: str, push: bool = True) -> str | None:
    """Where a git remote name pushes (``push``, the default; several push URLs are joined
    with " and ": git pushes to each) or fetches from; None if there is no such remote.
    ``remote`` itself when it is already a URL or path. The push URL is the one that matters:
    a fork set up with ``git remote set-url --push`` fetches from one repository and pushes
    to another."""
    proc = _git("remote", "get-url", *(["--push", "--all"] if push else []), remote)
    if proc.returncode == 0:
        return " and ".join(proc.stdout.split())
    return None if re.fullmatch(r"[\w.-]+", remote) else remote


def is_hosted_url(url: str) -> bool:
    """https://host/..., ssh://host/..., git://host/... or scp-style user@host:path: a server,
    not a folder on this machine (a local clone's origin is the developer's own repository)."""
    return bool(re.match(r"^(https?|ssh|git|git\+ssh)://[^/]+/", url) or re.match(r"^[\w.-]+@[\w.-]+:(?!/)", url))


def publish_target(remote: str | None) -> tuple[str, str]:
    """(remote, push URL) to push to. Without ``--remote``, origin is used only when every URL
    it pushes to is hosted; a local one (a clone of a clone, or a push URL set to a folder)
    needs ``--remote`` spelled out, so a publish never force-pushes gh-pages into a
    developer's own repository by surprise."""
    if remote is not None:
        url = _remote_url(remote)
        if url is None:
            fail(f"--remote {remote!r} is neither a git remote of this repository nor a URL or path")
        return remote, url
    url = _remote_url("origin")
    if url is None:
        fail("this repository has no remote 'origin': pass --remote URL-or-name to say where to publish")
    if not all(is_hosted_url(u) for u in url.split(" and ")):
        fetch = _remote_url("origin", push=False)
        where = f"origin is {url}" if fetch == url else f"origin pushes to {url} (its push URL; it fetches from {fetch})"
        fail(f"{where}, not a hosted repository (https/ssh to a host); publishing would force-push "
             f"gh-pages there. Pass --remote explicitly (--remote origin to push there anyway)")
    return "origin", url


def publish_branch() -> str:
    """The branch the site is published to: PUBLISH_BRANCH in _ext/book_colab.py, the one place it
    is written (each chapter's Colab button links into that branch). Loaded by path, and only when
    publishing: that module imports only the standard library."""
    spec = importlib.util.spec_from_file_location("book_colab", ROOT / "_ext" / "book_colab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PUBLISH_BRANCH


def _source_in(ref: str) -> str | None:
    """The first of SOURCE_MARKERS that the tip of ``ref`` holds, or None (also for no such ref)."""
    for path in SOURCE_MARKERS:
        if _git("cat-file", "-e", f"{ref}:{path}").returncode == 0:
            return path
    return None


def check_publish_branch(branch: str, remote: str, force_branch: bool) -> None:
    """ghp-import makes ``branch`` (the local branch, and the remote's with -p) one commit that
    holds only the HTML: whatever the branch held is gone. So the branch checked out and any
    branch that holds the project's source are refused, always; any branch but the publish
    branch needs --force-branch."""
    default = publish_branch()
    head = _git("symbolic-ref", "--quiet", "--short", "HEAD")
    if head.returncode == 0 and head.stdout.strip() == branch:
        fail(f"--branch {branch!r} is the branch checked out here: publishing would replace its history with a "
             f"commit of HTML only. The site goes to {default!r}")
    refs = [f"refs/heads/{branch}"]
    if re.fullmatch(r"[\w.-]+", remote):  # a remote name: its remote-tracking branch says what the remote holds
        refs.append(f"refs/remotes/{remote}/{branch}")
    for ref in refs:
        marker = _source_in(ref)
        if marker is not None:
            fail(f"branch {branch!r} holds this project's source ({ref} has {marker}): publishing would replace it "
                 f"with a commit of HTML only and force-push it. The site goes to {default!r}")
    if branch != default and not force_branch:
        fail(f"--branch {branch!r} is not the publish branch {default!r} (PUBLISH_BRANCH in _ext/book_colab.py, "
             f"which the Colab buttons link into): publishing replaces that branch with a commit of HTML only. "
             f"Pass --force-branch if {branch!r} is meant to hold only the site")


def publish(remote: str | None, branch: str | None, push: bool, force_branch: bool = False) -> None:
    """Build from scratch (no reports/, no pages left from an earlier layout), then publish.
    Everything that can refuse is checked before the (slow) build."""
    if push:
        remote, url = publish_target(remote)
    else:
        remote, url = remote or "origin", None
    branch = branch or publish_branch()
    check_publish_branch(branch, remote, force_branch)
    for ref in (f"refs/heads/{branch}", f"refs/remotes/{remote}/{branch}"):
        if _git("cat-file", "-e", f"{ref}:versions.json").returncode == 0:
            fail(f"branch {branch!r} holds released editions ({ref} has versions.json): publish would replace them "
                 f"with one unversioned site. Publish with `python3 tasks.py release X.Y.Z`")
    if push:
        print(f"will force-push _build/html to branch {branch!r} of {remote} (push URL {url})", flush=True)
    else:
        print(f"will commit _build/html to the local branch {branch!r} (no push)", flush=True)
    build(clean=True)
    args = [BIN / "ghp-import", "-n", "-f", "-r", remote, "-b", branch, "-m", "Publish tinyformer site"]
    if push:
        args.append("-p")
    run(*args, HTML)


# ------------------------------------------------------------------ release: editions
# Each release is an edition of the book at its own address on the publish branch, X.Y.Z/, written
# once and never changed; latest/ is a copy of the newest, the root's index.html leads to it, and
# versions.json (the version switcher's list, read by every page as ../versions.json) names them all.
EDITION = re.compile(r"\d+\.\d+\.\d+")
RELEASE_FILES = ("VERSION", "CITATION.cff", "CHANGELOG.md")  # what the release commit changes
CHANGELOG_HEAD = """# Changelog

Each release is an edition of the book at its own address, which never changes once published
(`python3 tasks.py release X.Y.Z` writes these entries, newest first).
"""
ROOT_REDIRECT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tinyformer: the newest edition</title>
<meta http-equiv="refresh" content="0; url={target}">
<link rel="canonical" href="{address}">
</head>
<body><p>The newest edition of tinyformer ({version}) is at <a href="{target}">{address}</a>.</p></body>
</html>
"""


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _git_out(*args: str) -> str:
    """git ARGS in ROOT; a failure ends the release with git's own last line."""
    proc = _git(*args)
    if proc.returncode != 0:
        fail(f"git {' '.join(args)} failed: {(proc.stderr.strip().splitlines() or ['no message'])[-1]}")
    return proc.stdout


def _cff_field(field: str, text: str | None = None) -> str:
    """A top-level field of CITATION.cff (a plain or quoted scalar), read without a YAML library."""
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8") if text is None else text
    match = re.search(rf'^{re.escape(field)}: *"?([^"\n]*?)"? *$', text, re.M)
    if match is None:
        fail(f"CITATION.cff has no top-level '{field}:' line")
    return match.group(1)


def site_ref(branch: str, remote: str) -> str | None:
    """Where the published site is read from: the local publish branch, else the remote's."""
    for ref in (f"refs/heads/{branch}", f"refs/remotes/{remote}/{branch}"):
        if _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0:
            return ref
    return None


def published_editions(ref: str | None) -> list[dict]:
    """The editions the site at ``ref`` lists in its versions.json, newest first."""
    proc = _git("show", f"{ref}:versions.json") if ref else None
    return json.loads(proc.stdout) if proc is not None and proc.returncode == 0 else []


def tree_blobs(ref: str) -> dict[str, str]:
    """path -> blob id of every file in ``ref``'s tree."""
    out = _git_out("ls-tree", "-r", "-z", ref)
    return {line.split("\t", 1)[1]: line.split()[2] for line in out.split("\0") if line}


def blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _changelog_entry(version: str, date: str, address: str) -> str:
    previous = max((t[1:] for t in _git_out("tag", "--list", "v*").split() if EDITION.fullmatch(t[1:])),
                   key=version_key, default=None)
    if previous is None:
        changes = "- The first edition at its own address."
    else:
        changes = _git_out("log", "--no-merges", "--format=- %s", f"v{previous}..HEAD").strip() or "- No changes."
    return f"## {version} ({date})\n\n{address}\n\n{changes}\n"


def write_release_files(version: str, date: str) -> None:
    """VERSION (the one place the version is written), CITATION.cff's version and date (GitHub and
    Zenodo read them there; the build checks they agree with VERSION) and the CHANGELOG.md entry."""
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    for field, value in (("version", version), ("date-released", date)):
        _cff_field(field, cff)  # refused, before anything is written, when the line is missing
        cff = re.sub(rf"^{field}: .*$", f'{field}: "{value}"', cff, count=1, flags=re.M)
    address = _cff_field("url", cff).rstrip("/") + f"/{version}/"
    changelog = ROOT / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8") if changelog.exists() else CHANGELOG_HEAD
    entry = _changelog_entry(version, date, address)
    first = text.find("\n## ")
    text = text.rstrip("\n") + "\n\n" + entry if first < 0 else text[:first + 1] + entry + "\n" + text[first + 1:]
    (ROOT / "VERSION").write_text(version + "\n", encoding="utf-8")
    (ROOT / "CITATION.cff").write_text(cff, encoding="utf-8")
    changelog.write_text(text, encoding="utf-8")


def check_edition(html: Path, version: str, date: str, commit: str) -> None:
    """``html`` is a strict build of this release: its edition.json (written by the build) names
    the version, date and commit, from a tree without uncommitted changes, and no cell failed."""
    stamp_path = html / "edition.json"
    if not stamp_path.is_file():
        fail(f"{html} has no edition.json: it is not a build of this book (every build writes one)")
    stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    problems = []
    if stamp.get("version") != version:
        problems.append(f"it is version {stamp.get('version')}, not {version}")
    if stamp.get("date") != date:
        problems.append(f"it is dated {stamp.get('date')}, not {date}")
    if stamp.get("commit") != commit:
        problems.append(f"it was built from commit {str(stamp.get('commit'))[:12]}, "
                        f"not the release commit {commit[:12]}")
    if not stamp.get("clean"):
        problems.append("it was built from a tree with uncommitted changes")
    if not stamp.get("strict"):
        problems.append("it was not built strictly (-W)")
    reports = html / "reports"
    if reports.is_dir() and any(reports.iterdir()):
        problems.append(f"it holds execution reports ({reports.name}/: a cell failed)")
    if problems:
        fail(f"{html} is not a strict build of release {version}: {'; '.join(problems)}")


def stage_site(staging: Path, ref: str | None, html: Path, version: str, date: str, editions: list[dict]) -> None:
    """The whole site as it will be published: the branch's files as they are, plus the new
    edition's folder, latest/ (a copy of it), versions.json and the root's redirect."""
    if ref is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(staging, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    edition = staging / version
    if edition.exists():
        fail(f"the publish branch already has a folder {version}/ (not in its versions.json): remove it by hand first")
    # The build's own versions.json names only itself; the site's list is at the root.
    shutil.copytree(html, edition, ignore=lambda folder, names: ["versions.json"] if Path(folder) == html else [])
    if (staging / "latest").exists():
        shutil.rmtree(staging / "latest")
    shutil.copytree(edition, staging / "latest")
    base = _cff_field("url").rstrip("/")
    listing = sorted([{"version": version, "date": date}, *editions], key=lambda e: version_key(e["version"]),
                     reverse=True)
    newest = listing[0]["version"]
    versions = [{"name": f"{e['version']} (latest)" if e["version"] == newest else e["version"],
                 "version": e["version"], "url": f"../{e['version']}/", "preferred": e["version"] == newest,
                 "date": e.get("date"), "address": f"{base}/{e['version']}/"} for e in listing]
    (staging / "versions.json").write_text(json.dumps(versions, indent=1) + "\n", encoding="utf-8")
    (staging / "index.html").write_text(ROOT_REDIRECT.format(target=f"{newest}/", address=f"{base}/{newest}/",
                                                             version=newest), encoding="utf-8")


def release(version: str, html: Path | None = None, remote: str | None = None, push: bool = True,
            prepare: bool = False) -> None:
    """Publish edition ``version`` (see the module's docstring). Everything that can refuse is
    checked before anything is written; older editions' files are compared, blob by blob, before
    the branch is pushed."""
    if not EDITION.fullmatch(version):
        fail(f"{version!r} is not a version X.Y.Z (three numbers, e.g. 1.2.0)")
    if push:
        remote, url = publish_target(remote)
    else:
        remote, url = remote or "origin", None
    branch = publish_branch()
    check_publish_branch(branch, remote, force_branch=False)
    ref = site_ref(branch, remote)
    editions = published_editions(ref)
    tag = f"v{version}"
    if version in [e["version"] for e in editions]:
        fail(f"{version} is already released ({ref} has {version}/): an edition never changes; release a newer version")
    changes = _git_out("status", "--porcelain").splitlines()
    if changes:
        fail(f"the working tree has uncommitted changes ({len(changes)}, first: {changes[0].strip()}): a release is "
             f"made from a commit; commit or stash them first")
    head = _git_out("rev-parse", "HEAD").strip()
    tagged = _git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}").stdout.strip()
    if tagged and tagged != head:
        fail(f"tag {tag} exists and is commit {tagged[:12]}, not this one: {version} is taken; release a newer version")
    if tagged:
        print(f"continuing the release of {version}: its tag {tag} is this commit and {branch} has no {version}/ yet")
    else:
        releases = [t[1:] for t in _git_out("tag", "--list", "v*").split() if EDITION.fullmatch(t[1:])]
        newest = max([*releases, *(e["version"] for e in editions)], key=version_key, default=None)
        if newest is not None and version_key(version) <= version_key(newest):
            fail(f"{version} is not newer than {newest}, the newest release: each release must be newer")
        date = time.strftime("%Y-%m-%d", time.gmtime())
        write_release_files(version, date)
        _git_out("add", *RELEASE_FILES)
        _git_out("commit", "-q", "-m", f"Release {version}")
        _git_out("tag", "-a", tag, "-m", f"tinyformer {version}")
        head = _git_out("rev-parse", "HEAD").strip()
        print(f"committed {', '.join(RELEASE_FILES)} as 'Release {version}' ({head[:12]}), tagged {tag}", flush=True)
    if prepare:
        print(f"prepared {version}: `python3 tasks.py release {version}` builds and publishes it; "
              f"`python3 tasks.py release {version} --html DIR` publishes a strict build of this commit")
        return
    date = _cff_field("date-released")
    if html is None:
        build(clean=True)
        html = HTML
    html = Path(html).resolve()
    check_edition(html, version, date, head)
    if not (BIN / "ghp-import").exists():
        fail(f"{BIN / 'ghp-import'} is missing: run `python3 tasks.py setup`, then `python3 tasks.py release {version}` "
             f"again (it goes on from the tag)")
    if ref is not None and ref != f"refs/heads/{branch}":
        _git_out("branch", branch, ref)  # build on what the remote holds, so the push is a fast-forward
    before = tree_blobs(ref) if ref is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "site"
        staging.mkdir()
        stage_site(staging, ref, html, version, date, editions)
        expected = {f"{version}/{p.relative_to(staging / version).as_posix()}": blob_id(p.read_bytes())
                    for p in (staging / version).rglob("*") if p.is_file()}
        run(BIN / "ghp-import", "-n", "-b", branch, "-m", f"Publish edition {version}", staging)
    after = tree_blobs(f"refs/heads/{branch}")
    old = {e["version"] for e in editions}
    changed = sorted(p for p, blob in before.items() if p.split("/", 1)[0] in old and after.get(p) != blob)
    new = {p: blob for p, blob in after.items() if p.startswith(f"{version}/")}
    if changed or new != expected:
        if ref is not None:
            _git_out("update-ref", f"refs/heads/{branch}", _git_out("rev-parse", ref).strip())
        what = f"older editions' files changed: {changed[:3]}" if changed else f"{version}/ is not the build"
        fail(f"the staged site is wrong ({what}); {branch} is back where it was and nothing was pushed")
    print(f"{branch}: {version}/ ({len(new)} files), latest/, versions.json ({len(old) + 1} editions), index.html "
          f"(leads to {version}/); {sum(p.split('/', 1)[0] in old for p in before)} files of older editions unchanged")
    if push:
        run("git", "push", remote, f"refs/heads/{branch}:refs/heads/{branch}")
        print(f"published {version}. Push the release commit and its tag to the source repository (git push origin "
              f"HEAD {tag}); a GitHub release from {tag} has Zenodo archive it with a DOI (README, 'Editions')")
    else:
        print(f"committed the site to the local branch {branch!r} (no push)")

def clean() -> None:
    """Remove _build/. A _build that is a symbolic link (to a bigger disk, say) is refused rather
    than emptied: deleting through a link removes files outside this checkout, and a link
    pointing somewhere unexpected would lose them."""
    if BUILD.is_symlink():
        fail(f"{BUILD.name} is a symbolic link (to {os.readlink(BUILD)}): clean does not delete through links. "
             f"Empty that folder yourself, or remove the link (rm {BUILD.name}) and the next build makes a real "
             f"{BUILD.name}/")
    if not BUILD.exists():
        print(f"nothing to remove: there is no {BUILD.name}/")
        return
    try:
        if BUILD.is_dir():
            shutil.rmtree(BUILD)
        else:
            BUILD.unlink()
    except OSError as exc:
        fail(f"could not remove {exc.filename or BUILD}: {exc.strerror or exc}")
    print(f"removed {BUILD.name}/")


ORT_DIR = ROOT / "assets" / "vendor" / "onnxruntime-web"
ORT_VERSION = "1.30.0"
# What the playground's wasm backend loads, nothing else: the wasm-only ESM entry, the
# Emscripten glue it imports, and the SIMD binary (the threaded build also runs single-threaded).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_KEEP = ("LICENSE", "README.md", "manifest.json")  # written by hand, kept across refreshes


def vendor_ort(version: str) -> None:
    """Fetch onnxruntime-web@VERSION with `npm pack`, copy ORT_FILES into assets/vendor/onnxruntime-web/
    and write manifest.json (each file's sha256; tests/test_playground.py checks them)."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("error: vendor-ort needs npm (it downloads the onnxruntime-web package from the npm registry)")
    with tempfile.TemporaryDirectory() as tmp:
        run(npm, "pack", "--silent", f"onnxruntime-web@{version}", cwd=tmp)
        tarballs = list(Path(tmp).glob("onnxruntime-web-*.tgz"))
        if len(tarballs) != 1:
            sys.exit(f"error: npm pack left {[t.name for t in tarballs]} in {tmp}, expected one onnxruntime-web tarball")
        data = tarballs[0].read_bytes()
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        with tarfile.open(tarballs[0]) as tar:
            package = json.load(tar.extractfile("package/package.json"))
            if package.get("version") != version or package.get("license") != "MIT":
                sys.exit(f"error: expected onnxruntime-web {version} under the MIT licence (our LICENSE file), "
                         f"got version {package.get('version')!r}, licence {package.get('license')!r}")
            files = {name: tar.extractfile(f"package/dist/{name}").read() for name in ORT_FILES}
    ORT_DIR.mkdir(parents=True, exist_ok=True)
    for old in ORT_DIR.iterdir():
        if old.name not in ORT_FILES + ORT_KEEP:
            old.unlink()
    for name, content in files.items():
        (ORT_DIR / name).write_bytes(content)
    manifest = {
        "package": "onnxruntime-web",
        "version": version,
        "npm_integrity": integrity,  # compare: npm view onnxruntime-web@VERSION dist.integrity
        "refresh": f"python3 tasks.py vendor-ort --version {version}",
        "files": {name: {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
                  for name, content in files.items()},
    }
    (ORT_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    total = sum(len(c) for c in files.values())
    print(f"vendored onnxruntime-web {version}: {len(files)} files, {total / 1e6:.1f} MB in {ORT_DIR.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    sub.add_parser("setup")
    p_build = sub.add_parser("build")
    p_build.add_argument("--clean", action="store_true", help="delete _build/html first")
    sub.add_parser("test", help="extra arguments go to pytest")
    p_pub = sub.add_parser("publish")
    p_pub.add_argument("--remote", default=None,
                       help="git remote name or URL; default origin, only when its push URL is a hosted (https/ssh) URL")
    p_pub.add_argument("--branch", default=None,
                       help="default: the branch the Colab buttons link into (PUBLISH_BRANCH in _ext/book_colab.py)")
    p_pub.add_argument("--no-push", action="store_true", help="commit to the local branch only")
    p_pub.add_argument("--force-branch", action="store_true",
                       help="allow a --branch other than the publish branch (never the branch checked out, "
                            "nor one that holds the project's source)")
    p_rel = sub.add_parser("release", help="publish edition X.Y.Z at its own address (see the top of tasks.py)")
    p_rel.add_argument("version", help="X.Y.Z, newer than the newest release")
    p_rel.add_argument("--html", type=Path, default=None,
                       help="publish this strict build of the release commit instead of building (its edition.json "
                            "must name this version, date and commit, built strictly from a clean tree)")
    p_rel.add_argument("--prepare", action="store_true", help="stop after the release commit and tag")
    p_rel.add_argument("--remote", default=None, help="as for publish")
    p_rel.add_argument("--no-push", action="store_true", help="commit to the local publish branch only")
    sub.add_parser("pdf", help="build, then print the whole book to _build/pdf/tinyformer.pdf")
    p_ort = sub.add_parser("vendor-ort", help="refresh assets/vendor/onnxruntime-web from npm")
    p_ort.add_argument("--version", default=ORT_VERSION)
    sub.add_parser("clean")
    args, extra = parser.parse_known_args()
    if extra and args.task != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.task == "setup":
        setup()
    elif args.task == "build":
        build(clean=args.clean)
    elif args.task == "test":
        test(extra)
    elif args.task == "publish":
        publish(args.remote, args.branch, push=not args.no_push, force_branch=args.force_branch)
    elif args.task == "release":
        release(args.version, html=args.html, remote=args.remote, push=not args.no_push, prepare=args.prepare)
    elif args.task == "pdf":
        pdf()
    elif args.task == "vendor-ort":
        vendor_ort(args.version)
    elif args.task == "clean":
        clean()


def cli() -> int:
    """main() with a tool's manners: a failed command's exit status, and Ctrl-C as one line and
    status 130 (128 + SIGINT), never a traceback."""
    try:
        main()
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    except KeyboardInterrupt as exc:
        after_echo = "\n" if sys.stderr.isatty() else ""  # the terminal's "^C" has no newline
        message = str(exc) if isinstance(exc, Interrupted) else "interrupted"
        print(f"{after_echo}{message}", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
