"""Every documented command runs.

The shell commands shown in README.md and in the book's chapters (```bash, ```console, ```sh
blocks, and ``!python ...`` lines in code cells) that train, benchmark or call tasks.py are read
from the files themselves, so an edit to the docs is what gets tested. Each file's commands run
in order (a "continue it" follows the run it continues) in a scratch copy of the repository,
scaled down and must exit 0: a training command's ``--config`` is replaced by a scaled copy and
its step, batch and evaluation flags are scaled (:func:`scale_down`, with the book kit's
``smoke_scaled``: steps divided by 64), ``python -m tinyformer.book.runs`` gets ``--smoke``, and
benchmarks get extra size arguments.

Commands that need a CUDA GPU are checked for valid arguments only (``--check-config``) and
skipped for running on a machine without one. ``torchrun`` commands run as ``python -m
torch.distributed.run`` (the same launcher) with 2 CPU processes; those that need more GPUs
than the machine has, or several machines, are checked with ``--check-config`` in one process. ``tasks.py build``, ``test``, ``publish`` and ``pdf`` are
excluded: they build the book or run this suite, and are tested by test_book.py /
test_publish.py and CI itself; ``publish``'s refusal of a local origin is tested below.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinyformer.book.runs import smoke_scaled
from tinyformer.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]
RELEVANT = re.compile(r"(-m tinyformer\.train\b|-m tinyformer\.book\.runs\b|benchmarks/bench_\w+\.py|tasks\.py)")
EXCLUDED = {
    "build": "builds the whole book (tests/test_book.py and CI do that)",
    "test": "runs this test suite",
    "publish": "builds and pushes the site (tests/test_publish.py, against a local bare repository)",
    "release": "commits, tags, builds and pushes an edition (tests/test_release.py, against a local bare repository)",
    "pdf": "builds the book, then prints it (tests/test_browser.py prints the session's build)",
    "setup": "creates .venv (CI's first step)",
}
# Benchmarks keep their documented arguments; these, appended (argparse keeps the last), shrink them.
BENCH_SMALL = {
    "bench_training.py": ["--d-model", "32", "--layers", "1", "--heads", "2", "--context", "16", "--batch", "2",
                          "--steps", "1"],
    "bench_generation.py": ["--new-tokens", "4", "--prompts", "8"],
    "bench_reference.py": ["--steps", "2", "--eval-batches", "1", "--no-memory", "--no-write"],
}
BENCH_NOT_RUN = {"bench_build.py": "builds the book seven times (about 25 minutes)", "bench_tokenizer.py": "trains BPE on the full corpus",
                 "bench_playground.py": "needs the built site and Chromium",
                 "bench_site.py": "runs Lighthouse over every page of the built site, three times (about 15 minutes)"}


def _blocks(text: str):
    """(kind, body) of each fenced block."""
    for match in re.finditer(r"^(`{3,}|~{3,})\s*(\{[\w-]+\}\s*)?([\w-]*)[^\n]*\n(.*?)^\1\s*$", text, re.M | re.S):
        directive, lang, body = match.group(2) or "", match.group(3), match.group(4)
        yield (directive.strip() or lang), body


def extract_commands(path: Path) -> list[str]:
    """The training, benchmark and tasks.py commands shown in ``path``, in order."""
    commands = []
    for kind, body in _blocks(path.read_text(encoding="utf-8")):
        lines = []
        if kind in ("bash", "console", "sh", "shell"):
            for line in body.replace("\\\n", " ").splitlines():
                line = line.strip()
                if kind == "console":
                    if not line.startswith("$ "):
                        continue  # output, not a command
                    line = line[2:]
                lines.append(line)
        elif kind in ("{code-cell}", "code-cell", "python", "ipython3"):
            lines = [line.strip()[1:] for line in body.splitlines() if line.strip().startswith("!")]
        for line in lines:
            command = " ".join(re.split(r"\s+#", line, maxsplit=1)[0].split())
            if command and not command.startswith("#") and RELEVANT.search(command):
                commands.append(command)
    return commands


def needs_gpu(argv: list[str], cwd: Path) -> bool:
    if "cuda" in " ".join(argv):
        return True
    if "--config" in argv:
        config = cwd / argv[argv.index("--config") + 1]
        return config.is_file() and '"cuda' in config.read_text()
    return False


def _launcher_option(argv: list[str], name: str, default: str) -> str:
    """The value of torchrun's ``--name=value`` or ``--name value`` (before ``-m``)."""
    for i, arg in enumerate(argv[:argv.index("-m")]):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def prepare(command: str, scratch: Path) -> tuple[list[str] | None, str]:
    """argv to run (None: not run) and what is done with it."""
    argv = shlex.split(command)
    if Path(argv[0]).name == "torchrun":
        training = argv[argv.index("-m"):]  # the launcher's own options come before -m
        nodes, processes = int(_launcher_option(argv, "--nnodes", "1")), int(_launcher_option(argv, "--nproc_per_node", "1"))
        if nodes > 1:
            return [sys.executable, *training, "--check-config"], "arguments checked (--check-config): needs several machines"
        if needs_gpu(argv, scratch) and torch.cuda.device_count() < processes:
            return ([sys.executable, *training, "--check-config"],
                    f"arguments checked (--check-config, one process); training needs {processes} CUDA GPUs")
        # torchrun is `python -m torch.distributed.run` (the scratch copy has no .venv/bin/torchrun).
        return [sys.executable, "-m", "torch.distributed.run", *argv[1:]], "run under torchrun (scaled down)"
    if argv[0].endswith(("python", "python3")) or argv[0].startswith(".venv/"):
        argv[0] = sys.executable
    if "tasks.py" in command:
        task = argv[argv.index(next(a for a in argv if a.endswith("tasks.py"))) + 1]
        if task in EXCLUDED:
            return None, f"excluded: tasks.py {task} {EXCLUDED[task]}"
        return argv, "run"
    bench = next((Path(a).name for a in argv if re.search(r"bench_\w+\.py$", a)), None)
    if bench:
        if bench in BENCH_NOT_RUN:
            return None, f"not run: {bench} {BENCH_NOT_RUN[bench]}"
        if needs_gpu(argv, scratch):
            return None, "not run: needs a CUDA GPU"
        return argv + BENCH_SMALL.get(bench, []), "run (small sizes)"
    if needs_gpu(argv, scratch) and not torch.cuda.is_available():
        return argv + ["--check-config"], "arguments checked (--check-config); training needs a CUDA GPU"
    return argv, "run (scaled down)"


INT_TYPES = ("int", "int | None")  # TrainConfig's integer fields (None: a default derived from the others)


def scale_down(argv: list[str], scratch: Path) -> list[str]:
    """The same command in seconds. For ``-m tinyformer.train``: its ``--config`` file (or, for a new
    run without one, the default TrainConfig) replaced by a scaled copy in ``scratch/smoke-configs``,
    and each TrainConfig flag's value scaled; a resume without ``--config`` reads its config from
    the checkpoint, which a scaled run wrote. For ``-m tinyformer.book.runs``: ``--smoke``."""
    if "tinyformer.book.runs" in argv:
        return [*argv, "--smoke"]
    if "tinyformer.train" not in argv:
        return argv
    start = argv.index("tinyformer.train") + 1
    launcher, args = argv[:start], argv[start:]
    fields = TrainConfig.__dataclass_fields__
    scaled = []
    for i, arg in enumerate(args):
        name = arg.split("=", 1)[0]
        field = name[2:].replace("-", "_") if name.startswith("--") else None
        value = arg.split("=", 1)[1] if "=" in arg else None
        if value is None and i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1]:
            previous = args[i - 1][2:].replace("-", "_")
            if previous in fields and fields[previous].type in INT_TYPES:
                arg = str(smoke_scaled({previous: int(arg)})[previous])
        elif value is not None and field in fields and fields[field].type in INT_TYPES:
            arg = f"{name}={smoke_scaled({field: int(value)})[field]}"
        scaled.append(arg)
    args = scaled
    folder = scratch / "smoke-configs"
    folder.mkdir(exist_ok=True)
    if "--config" in args:
        i = args.index("--config") + 1
        base = json.loads((scratch / args[i]).read_text(encoding="utf-8"))
        args[i] = str(folder / Path(args[i]).name)
    elif "--resume" not in args:
        base = TrainConfig().to_dict()
        args = ["--config", str(folder / "defaults.json"), *args]
    else:
        return launcher + args
    Path(args[args.index("--config") + 1]).write_text(json.dumps(smoke_scaled(base)), encoding="utf-8")
    return launcher + args


def scratch_copy(tmp_path: Path) -> Path:
    scratch = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", "_build", "runs", "__pycache__", "node_modules", ".node",
                                    "artifacts", "*.pt")
    for name in ("tinyformer", "benchmarks", "tests/data"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, scratch / name, ignore=ignore)
    for name in ("tasks.py", "pyproject.toml", "constraints.txt", "_toc.yml"):
        shutil.copy2(ROOT / name, scratch / name)
    return scratch


def test_the_docs_show_the_commands_this_file_runs():
    readme = extract_commands(ROOT / "README.md")
    assert any("--config tinyformer/configs/book.json" in c for c in readme), readme
    assert any("--resume" in c and "--max-steps" in c for c in readme), readme
    assert any("bench_training.py" in c for c in readme), readme
    assert any(c.startswith(".venv/bin/torchrun --standalone --nproc_per_node=2 -m tinyformer.train") for c in readme)
    assert any("--nnodes" in c and "--rdzv-endpoint" in c for c in readme), readme
    assert any("tasks.py build" in c for c in readme) and any("tasks.py test" in c for c in readme)


def test_extraction_reads_console_continuations_comments_and_bang_lines(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```console\n$ python -m tinyformer.train \\\n    --out runs/x --max-steps 64  # comment\nsome output\n```\n"
        "```{code-cell} ipython3\nx = 1\n!python -m tinyformer.train --out runs/y\n```\n"
        "```python\nprint('python -m tinyformer.train is not a shell line here')\n```\n"
        "```bash\nls runs  # unrelated\npython3 tasks.py build\n```\n"
    )
    assert extract_commands(doc) == [
        "python -m tinyformer.train --out runs/x --max-steps 64",
        "python -m tinyformer.train --out runs/y",
        "python3 tasks.py build",
    ]


@pytest.mark.parametrize("doc", [p for p in DOC_FILES if extract_commands(p)], ids=lambda p: p.name)
def test_documented_commands_exit_0(doc, tmp_path):
    scratch = scratch_copy(tmp_path)
    env = {**os.environ, "TINYFORMER_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(scratch)}
    env.pop("TINYFORMER_DEBUG", None)
    report = []
    for command in extract_commands(doc):
        argv, action = prepare(command, scratch)
        report.append(f"{command}\n    -> {action}")
        if argv is None:
            continue
        argv = scale_down(argv, scratch)
        proc = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{doc.name}: `{command}` exited {proc.returncode}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
    print("\n".join(report))


GPU_COMMANDS = [(p, c) for p in DOC_FILES for c in extract_commands(p) if needs_gpu(shlex.split(c), ROOT)]


@pytest.mark.parametrize("doc, command", GPU_COMMANDS, ids=[f"{p.name}: {c}" for p, c in GPU_COMMANDS])
def test_gpu_commands_run_where_there_is_a_gpu(doc, command):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU to train; its arguments were checked with --check-config by "
                    "test_documented_commands_exit_0")
    # With a GPU, test_documented_commands_exit_0 ran it (scaled down) like any other command.


# ---------------------------------------------------------------- tasks.py publish never surprises
sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402


@pytest.mark.parametrize(
    "url, hosted",
    [
        ("https://github.com/owner/tinyformer.git", True),
        ("git@github.com:owner/tinyformer.git", True),
        ("ssh://git@example.org/owner/tinyformer", True),
        ("/home/me/src/tinyformer", False),
        ("../tinyformer", False),
        ("file:///home/me/src/tinyformer", False),
    ],
)
def test_hosted_urls(url, hosted):
    assert tasks.is_hosted_url(url) is hosted


def _scratch_git(tmp_path: Path, origin: str | None) -> Path:
    repo = tmp_path / "clone"
    repo.mkdir()
    shutil.copy2(ROOT / "tasks.py", repo / "tasks.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    if origin:
        subprocess.run(["git", "remote", "add", "origin", origin], cwd=repo, check=True, env=env)
    return repo


@pytest.mark.parametrize("origin", [None, "/home/me/src/tinyformer"])
def test_publish_refuses_to_guess_a_local_origin_before_building(tmp_path, origin):
    repo = _scratch_git(tmp_path, origin)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    proc = subprocess.run([sys.executable, "tasks.py", "publish"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    expected = "has no remote 'origin'" if origin is None else f"origin is {origin}, not a hosted repository"
    assert expected in proc.stderr and "--remote" in proc.stderr
    assert not (repo / "_build").exists() and not (repo / ".venv").exists()  # refused before any work


def test_publish_target_names_where_it_pushes(tmp_path, monkeypatch):
    repo = _scratch_git(tmp_path, "https://github.com/owner/tinyformer.git")
    monkeypatch.setattr(tasks, "ROOT", repo)
    for key in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(key)
    assert tasks.publish_target(None) == ("origin", "https://github.com/owner/tinyformer.git")
    assert tasks.publish_target(str(tmp_path / "site.git")) == (str(tmp_path / "site.git"), str(tmp_path / "site.git"))


def test_scale_down_scales_configs_and_flags_and_keeps_the_rest(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "run.json").write_text(json.dumps({"max_steps": 640, "eval_interval": 50, "lr": 0.001}))
    argv = scale_down([sys.executable, "-m", "tinyformer.train", "--config", "configs/run.json", "--out", "runs/x",
                       "--max-steps", "540", "--warmup-steps=64", "--lr", "0.002"], tmp_path)
    written = tmp_path / "smoke-configs" / "run.json"
    assert argv == [sys.executable, "-m", "tinyformer.train", "--config", str(written), "--out", "runs/x",
                    "--max-steps", "9", "--warmup-steps=1", "--lr", "0.002"]
    assert json.loads(written.read_text()) == {"max_steps": 10, "eval_interval": 1, "lr": 0.001}
    resume = scale_down(["python", "-m", "tinyformer.train", "--out", "runs/x", "--resume", "--max-steps", "640"], tmp_path)
    assert resume == ["python", "-m", "tinyformer.train", "--out", "runs/x", "--resume", "--max-steps", "10"]
    new = scale_down(["python", "-m", "tinyformer.train", "--out", "runs/y"], tmp_path)
    assert new[3:5] == ["--config", str(tmp_path / "smoke-configs" / "defaults.json")]
    assert TrainConfig.from_dict(json.loads((tmp_path / "smoke-configs" / "defaults.json").read_text())).max_steps == 8
    assert scale_down(["python", "-m", "tinyformer.book.runs"], tmp_path)[-1] == "--smoke"
