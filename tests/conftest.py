import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def copy_mha_into_torch(ours, theirs: torch.nn.MultiheadAttention) -> None:
    """Load our q/k/v/o projections into nn.MultiheadAttention's packed weights."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.out_proj.weight.copy_(ours.o_proj.weight)
        if theirs.in_proj_bias is not None:
            theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            theirs.out_proj.bias.copy_(ours.o_proj.bias)


def copy_linear(ours, theirs: torch.nn.Linear) -> None:
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        if theirs.bias is not None:
            theirs.bias.copy_(ours.bias)


def copy_norm(ours, theirs) -> None:
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        if getattr(theirs, "bias", None) is not None:
            theirs.bias.copy_(ours.bias)


def randomize_(module: torch.nn.Module, scale: float = 0.5) -> torch.nn.Module:
    """Give every parameter (norm gains and biases too) random values, so a test
    cannot pass because some weight happened to be all ones or zeros."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return module


SMALL_CORPUS = ("In the beginning God created the heaven and the earth. And the earth was without form, and void. " * 60)


@pytest.fixture
def cfg(tmp_path):
    """A training configuration that runs in seconds: a tiny model on a small corpus in tmp_path."""
    from tinyformer.train import TrainConfig

    path = tmp_path / "corpus.txt"
    path.write_text(SMALL_CORPUS, encoding="utf-8")
    return TrainConfig(
        corpus=str(path), max_steps=24, warmup_steps=4, eval_interval=8, eval_batches=2, batch_size=4,
        model_overrides={"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "context_length": 16},
    )


def interrupt_when_ready(argv, ready, timeout: float, **popen_kwargs):
    """Start ``argv``, wait until ``ready()`` (the process reached the phase under test), send one
    SIGINT and return (returncode, stdout, stderr). The process is killed if it outlives the test."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs)
    try:
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready(), proc.communicate(timeout=timeout / 2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout / 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def interrupt_while_importing_torch(module_args, **popen_kwargs):
    """Run ``python -X importtime -m MODULE_ARGS``, send one SIGINT in the middle of torch's import
    (-X importtime reports each import as it completes) and return (returncode, stderr lines other
    than the import-time report, all of stderr)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", *module_args],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, **popen_kwargs)
    try:
        seen = b""
        while b"torch." not in seen:
            chunk = proc.stderr.read1(65536)
            assert chunk, seen[-2000:]
            seen += chunk
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (seen + rest).decode(errors="replace")
    return proc.returncode, [line for line in err.splitlines() if not line.startswith("import time:")], err


class Built(Exception):
    """Raised by a test's stand-in for tasks.build: the command got past every check and asked to build."""


def run_tasks(capsys, *argv):
    """Run `tasks.py ARGV` in-process: (exit status, or "built" when it reached the build; stdout; stderr)."""
    import sys

    import tasks

    saved = sys.argv
    sys.argv = ["tasks.py", *argv]
    try:
        tasks.main()
        status = 0
    except Built:
        status = "built"
    except SystemExit as exc:
        status = exc.code
    finally:
        sys.argv = saved
    out = capsys.readouterr()
    return status, out.out, out.err
