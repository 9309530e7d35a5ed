#!/usr/bin/env python3
"""One entry point for maintainers; needs only Python 3.10+ to start.

    python3 tasks.py build      set up .venv (pinned), then build the site strictly into _build/html
    python3 tasks.py test       set up .venv (pinned), then run every test
    python3 tasks.py pdf        build (incremental), then print the whole book to _build/pdf/tinyformer.pdf
    python3 tasks.py publish    clean strict build, then push _build/html to gh-pages with ghp-import
                                (to origin only if it is a hosted URL; otherwise --remote is required)
    python3 tasks.py vendor-ort [--version V]
                                refresh assets/vendor/onnxruntime-web/ from npm (maintainers only;
                                the files are committed, so building needs no npm)
    python3 tasks.py clean      remove _build/

Set-up is skipped when .venv already matches pyproject.toml and constraints.txt.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
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
STAMP = VENV / ".tinyformer-setup"



def run(*cmd, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=kwargs.pop("cwd", ROOT), **kwargs)


def _setup_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def setup() -> None:
    """Create .venv and install tinyformer with the book and dev extras, pinned by constraints.txt."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python 3.10+ is needed, this is {sys.version.split()[0]}")
    fingerprint = _setup_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[book,dev]")
    STAMP.write_text(fingerprint)


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


def _remote_url(remote: str) -> str | None:
    """The URL of a git remote name (None if there is no such remote), or ``remote`` itself
    when it is already a URL or path."""
    proc = subprocess.run(["git", "remote", "get-url", remote], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout.strip()
    return None if re.fullmatch(r"[\w.-]+", remote) else remote


def is_hosted_url(url: str) -> bool:
    """https://host/..., ssh://host/..., git://host/... or scp-style user@host:path: a server,
    not a folder on this machine (a local clone's origin is the developer's own repository)."""
    return bool(re.match(r"^(https?|ssh|git|git\+ssh)://[^/]+/", url) or re.match(r"^[\w.-]+@[\w.-]+:(?!/)", url))


def publish_target(remote: str | None) -> tuple[str, str]:
    """(remote, url) to push to. Without ``--remote``, origin is used only when it is a hosted
    URL; a local origin (a clone of a clone) needs ``--remote`` spelled out, so a publish
    never force-pushes gh-pages into a developer's own repository by surprise."""
    if remote is not None:
        url = _remote_url(remote)
        if url is None:
            sys.exit(f"error: --remote {remote!r} is neither a git remote of this repository nor a URL or path")
        return remote, url
    url = _remote_url("origin")
    if url is None:
        sys.exit("error: this repository has no remote 'origin': pass --remote URL-or-name to say where to publish")
    if not is_hosted_url(url):
        sys.exit(f"error: origin is {url}, not a hosted repository (https/ssh to a host); publishing would force-push "
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


def publish(remote: str | None, branch: str | None, push: bool) -> None:
    """Build from scratch (no reports/, no pages left from an earlier layout), then publish."""
    if push:
        remote, url = publish_target(remote)  # checked before the (slow) build
    else:
        remote, url = remote or "origin", None
    branch = branch or publish_branch()
    if push:
        print(f"will force-push _build/html to branch {branch!r} of {remote} ({url})", flush=True)
    else:
        print(f"will commit _build/html to the local branch {branch!r} (no push)", flush=True)
    build(clean=True)
    args = [BIN / "ghp-import", "-n", "-f", "-r", remote, "-b", branch, "-m", "Publish tinyformer site"]
    if push:
        args.append("-p")
    run(*args, HTML)


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
                       help="git remote name or URL; default origin, only when it is a hosted (https/ssh) URL")
    p_pub.add_argument("--branch", default=None,
                       help="default: the branch the Colab buttons link into (PUBLISH_BRANCH in _ext/book_colab.py)")
    p_pub.add_argument("--no-push", action="store_true", help="commit to the local branch only")
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
        publish(args.remote, args.branch, push=not args.no_push)
    elif args.task == "pdf":
        pdf()
    elif args.task == "vendor-ort":
        vendor_ort(args.version)
    elif args.task == "clean":
        shutil.rmtree(BUILD, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
