"""Sphinx glue for the tinyformer book (declared in _config.yml as a local extension).

1. The theme: adds assets/css/style.css (the site's own look) to every page,
   and serves assets/vendor/ (MathJax) locally.
2. No stale pages: jupyter-cache keys a notebook on its code cells only, so a
   change inside the tinyformer package would otherwise reuse old outputs.
   The execution cache lives in a folder named after a hash of the package,
   and every chapter is re-read when that hash changes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSS_DIR = ROOT / "assets" / "css"
VENDOR_DIR = ROOT / "assets" / "vendor"  # third-party assets served locally (MathJax)


def _load_package_hash():
    """tinyformer/_hash.py, loaded by path: importing the package would import torch."""
    spec = importlib.util.spec_from_file_location("_tinyformer_hash", ROOT / "tinyformer" / "_hash.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.package_hash


package_hash = _load_package_hash()


def _config_inited(app, config):
    config.html_static_path = [*config.html_static_path, str(CSS_DIR), str(VENDOR_DIR)]
    # Jupyter Book builds html_theme_options from _config.yml (launch buttons,
    # repository); add to it here rather than replace it from sphinx.config.
    config.html_theme_options = {**config.html_theme_options, "show_toc_level": 2}
    key = package_hash()
    app.tinyformer_package_hash = key
    config.nb_execution_cache_path = str(Path(app.outdir).parent / ".jupyter_cache" / f"tinyformer-{key}")


def _outdated(app, env, added, changed, removed):
    key = app.tinyformer_package_hash
    previous = getattr(env, "tinyformer_package_hash", None)
    env.tinyformer_package_hash = key
    if previous is not None and previous != key:
        return sorted(env.found_docs)  # the package changed: re-execute every chapter
    return []


def setup(app):
    app.add_css_file("style.css")
    app.connect("config-inited", _config_inited)
    app.connect("env-get-outdated", _outdated)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
