"""The Binder environment (binder/) installs into a fresh venv and opens the chapters."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.book


def test_binder_requirements_install_and_open_a_chapter(tmp_path):
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # The CPU index is unreachable offline: fail fast on it and resolve from the other sources.
    env = {**os.environ, "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], cwd=ROOT, env=env, check=True)
    subprocess.run(["bash", "binder/postBuild"], cwd=ROOT, env={**env, "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"},
                   check=True)
    out = subprocess.run(
        [py, "-c", "import tinyformer, torch, jupytext; nb = jupytext.read('book/attention.md'); "
                   "print(tinyformer.__version__, torch.__version__, len(nb.cells))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out[0] == "0.1.0" and out[1].startswith("2.13.0") and int(out[2]) > 10
    assert (ROOT / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")
