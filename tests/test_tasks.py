"""tasks.py's set-up and clean survive interruptions and odd folders, and Ctrl-C is one line.

Nothing here installs anything: the set-up runs against scratch folders with the steps that
would download replaced, or against a stand-in Python that only waits to be interrupted.
(`publish` is tested in test_publish.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import interrupt_when_ready

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """tasks.py pointed at a scratch project (pyproject.toml, constraints.txt), its .venv there,
    and the pip commands recorded instead of run."""
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, tmp_path / name)
    env = tmp_path / ".venv"
    inside = {name: getattr(tasks, name).relative_to(tasks.VENV) for name in ("BIN", "PY", "STAMP")}
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    monkeypatch.setattr(tasks, "VENV", env)
    for name, path in inside.items():
        monkeypatch.setattr(tasks, name, env / path)
    commands = []
    monkeypatch.setattr(tasks, "run", lambda *cmd, **kw: commands.append([str(c) for c in cmd]))
    return commands


def without_pip(path: Path) -> None:
    """What an interrupted `venv` + ensurepip (or pip upgrading itself) leaves: a Python, no pip."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(path)


def test_an_environment_without_pip_is_found_incomplete(tmp_path):
    without_pip(tmp_path / "env")
    problem = tasks.venv_problem(tmp_path / "env")
    assert problem is not None and "pip does not run" in problem and "No module named pip" in problem
    assert "has no" in tasks.venv_problem(tmp_path / "nothing-here")
    assert tasks.venv_problem(Path(sys.prefix)) is None  # the environment running these tests has pip


def test_setup_recreates_an_environment_an_interrupted_set_up_left(scratch, capsys, monkeypatch):
    without_pip(tasks.VENV)  # the state that made every later run fail with "No module named pip"
    created = []

    def create(path):
        created.append(path)
        without_pip(path)  # a real one would have pip; the pip steps are recorded, not run

    monkeypatch.setattr(tasks, "create_venv", create)
    tasks.setup()
    out = capsys.readouterr().out
    assert f"{tasks.VENV} is incomplete (its pip does not run: " in out and "recreating it" in out
    assert created == [tasks.VENV]
    assert [c[1:4] for c in scratch] == [["-m", "pip", "install"]] * 2
    assert tasks.STAMP.read_text() == tasks._setup_fingerprint()  # written last, after the installs
    # A completed set-up is left alone: no check, no install.
    scratch.clear()
    tasks.setup()
    assert scratch == [] and created == [tasks.VENV]


def test_setup_interrupted_is_one_line_and_130(scratch, capsys, monkeypatch):
    def create(path):
        path.mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "create_venv", create)
    monkeypatch.setattr(sys, "argv", ["tasks.py", "setup"])
    assert tasks.cli() == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted while setting up {tasks.VENV}: the next run of setup, build or test finishes it "
                   f"(an incomplete environment is recreated)")
    assert not tasks.STAMP.exists()
    monkeypatch.setattr(tasks, "main", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert tasks.cli() == 130 and capsys.readouterr().err.strip() == "interrupted"


def test_ctrl_c_during_a_real_setup_is_one_line_and_130(tmp_path):
    """The command itself, interrupted (SIGINT, as Ctrl-C sends) while the set-up waits on the
    environment's Python: a stand-in that says it started, then sleeps."""
    for name in ("tasks.py", "pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    started = tmp_path / "started"
    python.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 60\n")
    python.chmod(0o755)
    code, out, err = interrupt_when_ready([sys.executable, "tasks.py", "setup"], started.exists, timeout=60, cwd=tmp_path)
    assert code == 130, out + err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"interrupted while setting up {tmp_path / '.venv'}: the next run of setup, "
                                        f"build or test finishes it (an incomplete environment is recreated)"]


def _copy_tasks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "tasks.py", folder / "tasks.py")
    return folder


def _clean(folder):
    return subprocess.run([sys.executable, "tasks.py", "clean"], cwd=folder, capture_output=True, text=True, timeout=60)


def test_clean_removes_build(tmp_path):
    folder = _copy_tasks(tmp_path)
    (folder / "_build" / "html").mkdir(parents=True)
    (folder / "_build" / "html" / "index.html").write_text("x")
    proc = _clean(folder)
    assert proc.returncode == 0 and "removed _build/" in proc.stdout and not (folder / "_build").exists()
    proc = _clean(folder)
    assert proc.returncode == 0 and "nothing to remove" in proc.stdout


def test_clean_refuses_a_build_folder_that_is_a_symbolic_link(tmp_path):
    """It used to exit 0 and remove nothing (shutil.rmtree refuses links; the error was ignored).
    Deleting through the link would remove files outside the checkout: refused, with what to do."""
    folder = _copy_tasks(tmp_path / "checkout")
    elsewhere = tmp_path / "big-disk" / "tinyformer-build"
    (elsewhere / "html").mkdir(parents=True)
    (elsewhere / "html" / "index.html").write_text("x")
    (folder / "_build").symlink_to(elsewhere)
    proc = _clean(folder)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: _build is a symbolic link (to {elsewhere}): clean does not delete through "
                                   f"links. Empty that folder yourself, or remove the link (rm _build) and the next "
                                   f"build makes a real _build/")
    assert (elsewhere / "html" / "index.html").exists() and (folder / "_build").is_symlink()
