"""Fault injection: training never loses work, and every bad input gets one clear line.

A real ``python -m tinyformer.train`` subprocess (a tiny model on a tiny corpus written to a
temporary folder) is stopped with SIGINT, SIGTERM, a double SIGINT and SIGKILL at seeded random
steps and resumed each time; after every interruption every file of the run must be readable
and consistent with the uninterrupted run, and the final resume must reach that run bit for
bit. Then each bad input of the command line must exit with status 2 and print one
``error: ...`` line naming the problem, with no traceback.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tinyformer.tokenizer import load_tokenizer
from tinyformer.train import TrainConfig, main, train
from tinyformer.checkpoints import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261128
WORDS = "in the beginning was the word and the word was with god light darkness water land sea heaven earth".split()


def corpus_text() -> str:
    rng = random.Random(SEED)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "." for _ in range(700)]
    return "\n".join(lines) + "\n"


def run_config(corpus: Path) -> dict:
    return dict(
        corpus=str(corpus), max_steps=40, warmup_steps=5, eval_interval=10, eval_batches=2, batch_size=16,
        checkpoint_interval=5, model_overrides={"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 128,
                                                "context_length": 48},
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    corpus = folder / "corpus.txt"
    corpus.write_text(corpus_text(), encoding="utf-8")
    config = folder / "config.json"
    config.write_text(json.dumps(run_config(corpus)))
    reference = folder / "reference"
    code, _, err = Trainer(["--config", str(config), "--out", str(reference)]).finish()  # the uninterrupted run
    assert code == 0, err[-3000:]
    return {"folder": folder, "corpus": corpus, "config": config, "reference": reference}


class Trainer:
    """A training subprocess whose progress (the tqdm step count on stderr) can be watched."""

    def __init__(self, args: list[str]):
        # TQDM_MININTERVAL=0: report every step, so a signal can be aimed at one. One thread: the same
        # arithmetic in every run (and quicker on a busy machine).
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "0",
               "OMP_NUM_THREADS": "1"}
        env.pop("TINYFORMER_SMOKE", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "tinyformer.train", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = b""
        self.stdout = b""
        self.step = 0
        # Each pipe has exactly one reader. (Popen.communicate would read stderr too, racing this
        # thread for the last lines, such as the "interrupted: ..." message.)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self.stdout_reader.start()

    def _read_stdout(self):
        while chunk := self.proc.stdout.read1(4096):
            self.stdout += chunk

    def _read(self):
        while chunk := self.proc.stderr.read1(4096):
            self.stderr += chunk
            steps = re.findall(rb"(\d+)/\d+ \[", self.stderr[-400:])
            if steps:
                self.step = max(self.step, int(steps[-1]))

    def wait_for_step(self, target: int, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if self.step >= target:
                return True
            time.sleep(0.005)
        return False

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.stdout_reader.join(timeout=10)
        return self.proc.returncode, self.stdout.decode(), self.stderr.decode(errors="replace")


def reference_log_rows(reference: Path) -> list[str]:
    return (reference / "log.csv").read_text().splitlines()


def check_run_files(out: Path, reference: Path) -> int:
    """Every file present is complete and agrees with the uninterrupted run; returns the checkpoint step."""
    ref_payload = load_checkpoint(reference / "checkpoint.pt")
    payload = load_checkpoint(out / "checkpoint.pt")  # checksum verified: not corrupt
    step = payload["iteration"]
    ref_log, log = ref_payload["extra"]["log"], payload["extra"]["log"]
    assert log["train_loss"] == ref_log["train_loss"][:step] and log["lr"] == ref_log["lr"][:step]
    assert (out / "tokenizer.json").read_bytes() == (reference / "tokenizer.json").read_bytes()
    load_tokenizer(out / "tokenizer.json")
    rows = (out / "log.csv").read_text().splitlines()
    assert rows == reference_log_rows(reference)[: len(rows)], "log.csv is not a prefix of the uninterrupted log"
    list(csv.DictReader(io.StringIO("\n".join(rows))))
    assert len(rows) - 1 <= step  # log.csv is written right after its checkpoint
    assert not (out / "result.json").exists() or step == 40
    return step


def test_interrupted_and_killed_training_resumes_bit_for_bit(setup):
    reference, out = setup["reference"], setup["folder"] / "faulted"
    rng = random.Random(SEED)
    kinds = ["SIGINT", "SIGKILL", "SIGTERM", "SIGINT twice", "SIGKILL"]
    rng.shuffle(kinds)
    targets = sorted(rng.sample(range(3, 36), len(kinds)))
    delivered = []
    for kind, target in zip(kinds, targets):
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        trainer = Trainer(["--config", str(setup["config"]), "--out", str(out), *resume])
        reached = trainer.wait_for_step(target)
        if reached:
            if kind == "SIGINT twice":
                trainer.proc.send_signal(signal.SIGINT)
                time.sleep(0.01)
            trainer.proc.send_signal(getattr(signal, kind.split()[0]))
        code, _, err = trainer.finish()
        assert "Traceback" not in err, err[-3000:]
        if not reached or code == 0:  # the run ended before the signal: nothing was interrupted
            continue
        delivered.append((kind, target))
        step = check_run_files(out, reference)
        if kind in ("SIGINT", "SIGTERM"):
            assert code == 128 + getattr(signal, kind), err[-2000:]
            saved = re.search(r"interrupted: (SIGINT|SIGTERM) at step (\d+): checkpoint saved", err)
            assert saved and int(saved.group(2)) == step >= target, err[-1500:]  # saved at the step it stopped
            assert len((out / "log.csv").read_text().splitlines()) - 1 == step
            assert "--resume" in err
        elif kind == "SIGINT twice":
            assert code == 130, err[-2000:]
        else:
            assert code == -signal.SIGKILL
    assert len(delivered) >= 3, f"too few interruptions landed mid-run: {delivered}"

    trainer = Trainer(["--config", str(setup["config"]), "--out", str(out), "--resume"])
    code, stdout, err = trainer.finish()
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert "40 steps" in stdout
    # bit for bit: weights, optimizer state, every logged loss, the CSV and the tokenizer
    ref, got = load_checkpoint(reference / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert got["iteration"] == 40 and got["checksum"] == ref["checksum"]
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    assert got["extra"]["log"] == ref["extra"]["log"]
    assert (out / "log.csv").read_bytes() == (reference / "log.csv").read_bytes()
    result = json.loads((out / "result.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert result["log"] == json.loads((reference / "result.json").read_text())["log"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.csv", "result.json", "tokenizer.json"]
    print(f"interruptions delivered: {delivered}")


def test_a_signal_at_the_first_printed_count_of_a_resumed_run_still_saves(setup, tmp_path):
    """A resumed run prints its starting count before its first step: a Ctrl-C aimed at that count
    is handled like any other (one clean step, a checkpoint, exit 130), not lost to a bare
    KeyboardInterrupt."""
    out = tmp_path / "run"
    cfg = TrainConfig(**run_config(setup["corpus"]))
    train(cfg, out_dir=out, progress=False, stop_after=20)
    trainer = Trainer(["--config", str(setup["config"]), "--out", str(out), "--resume"])
    assert trainer.wait_for_step(20)
    trainer.proc.send_signal(signal.SIGINT)
    code, _, err = trainer.finish()
    assert code == 130 and "Traceback" not in err, err[-3000:]
    saved = re.search(r"interrupted: SIGINT at step (\d+): checkpoint saved", err)
    assert saved, err[-2000:]
    assert check_run_files(out, setup["reference"]) == int(saved.group(1)) >= 21


def test_stale_temp_file_from_a_killed_writer_is_removed_on_start(setup, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(setup["reference"], out)
    (out / "result.json").unlink()
    stale = out / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    cfg = TrainConfig(**run_config(setup["corpus"]))
    train(cfg, out_dir=out, resume=True, progress=False)
    assert not stale.exists()
    assert (out / "result.json").exists()


# ---------------------------------------------------------------- bad inputs: one line, exit 2


def run_main(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def bad_inputs(setup, tmp: Path) -> list[tuple[str, list[str], str]]:
    """(what, argv, expected fragment of the one error line)."""
    config = setup["config"]
    base = ["--config", str(config)]

    def config_file(name, **changes):
        path = tmp / f"{name}.json"
        path.write_text(json.dumps({**json.loads(config.read_text()), **changes}))
        return ["--config", str(path)]

    (tmp / "notjson.json").write_text("{max_steps: 5")
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "a_file").write_text("x")
    short = tmp / "short.txt"
    short.write_text("a short corpus. " * 20)  # 320 characters: validation 32 < context 48 + 1
    finished = tmp / "finished"
    shutil.copytree(setup["reference"], finished)
    edited = tmp / "edited_corpus.txt"
    edited.write_text(corpus_text().replace("god", "God"))
    corrupt = tmp / "corrupt"
    shutil.copytree(setup["reference"], corrupt)
    data = bytearray((corrupt / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corrupt / "checkpoint.pt").write_bytes(bytes(data))
    foreign = tmp / "foreign"
    foreign.mkdir()
    torch.save({"weights": torch.zeros(2)}, foreign / "checkpoint.pt")
    nomodel = tmp / "nomodel"
    shutil.copytree(setup["reference"], nomodel)
    payload = load_checkpoint(nomodel / "checkpoint.pt")
    del payload["model"]
    torch.save(payload, nomodel / "checkpoint.pt")
    other_model = tmp / "other_model"
    shutil.copytree(setup["reference"], other_model)
    from tinyformer.model import TransformerConfig, TransformerLM

    ref = load_checkpoint(other_model / "checkpoint.pt")
    wrong = TransformerLM(TransformerConfig.from_dict({**ref["config"], "positions": "none"}))
    save_checkpoint(other_model / "checkpoint.pt", wrong, None, ref["iteration"], extra=ref["extra"])
    fresh = str(tmp / "fresh")
    return [
        ("max_steps 0", [*base, "--max-steps", "0", "--out", fresh], "TrainConfig.max_steps must be an integer >= 1, got 0"),
        ("NaN lr", [*base, "--lr", "nan", "--out", fresh], "TrainConfig.lr must be a finite number > 0, got nan"),
        ("negative grad_clip", [*base, "--grad-clip", "-1", "--out", fresh], "TrainConfig.grad_clip must be a finite number > 0, got -1.0"),
        ("min_lr above lr", [*base, "--min-lr", "0.1", "--out", fresh], "TrainConfig.min_lr must be <= lr (0.003)"),
        ("eval_batches 0", [*base, "--eval-batches", "0", "--out", fresh], "TrainConfig.eval_batches must be an integer >= 1, got 0"),
        ("batch 0", [*base, "--batch-size", "0", "--out", fresh], "TrainConfig.batch_size must be an integer >= 1, got 0"),
        ("eval_interval 0", [*base, "--eval-interval", "0", "--out", fresh], "TrainConfig.eval_interval must be an integer >= 1"),
        ("warmup > max_steps", [*base, "--warmup-steps", "90", "--out", fresh], "TrainConfig.warmup_steps must be <= max_steps (40), got 90"),
        ("betas not in [0, 1)", [*base, "--betas", "0.9", "1.5", "--out", fresh], "TrainConfig.betas must be two numbers in [0, 1)"),
        ("one beta", [*config_file("onebeta", betas=[0.9]), "--out", fresh], "TrainConfig.betas must be two numbers in [0, 1), e.g. [0.9, 0.95], got [0.9]"),
        ("max_steps as a string", [*config_file("strsteps", max_steps="5"), "--out", fresh], "TrainConfig.max_steps must be an integer >= 1, got '5' (str)"),
        ("max_steps as a bool", [*config_file("boolsteps", max_steps=True), "--out", fresh], "got True (bool)"),
        ("corpus is a directory", [*base, "--corpus", str(tmp), "--out", fresh], "(this is a directory)"),
        ("corpus missing", [*base, "--corpus", str(tmp / "nope.txt"), "--out", fresh], "(there is no file at this path)"),
        ("config not JSON", ["--config", str(tmp / "notjson.json"), "--out", fresh], "cannot read config file"),
        ("config a JSON list", ["--config", str(tmp / "list.json"), "--out", fresh], "must hold a JSON object of TrainConfig fields, got list"),
        ("config file missing", ["--config", str(tmp / "nope.json"), "--out", fresh], "no config file at"),
        ("unknown field", [*config_file("unknown", colour="red"), "--out", fresh], "unknown TrainConfig fields: ['colour']"),
        ("context_length 0", [*config_file("ctx0", model_overrides={"context_length": 0}), "--out", fresh], "TransformerConfig.context_length must be an integer >= 1, got 0"),
        ("odd RoPE head", [*config_file("oddhead", model_overrides={"d_model": 36, "n_heads": 4}), "--out", fresh], "d_head = d_model / n_heads must be even"),
        ("dtype", [*base, "--dtype", "float16", "--out", fresh], "TrainConfig.dtype must be one of ('float32', 'bfloat16')"),
        ("tiny BPE vocabulary", [*base, "--tokenizer", "bpe", "--bpe-vocab-size", "10", "--out", fresh], "TrainConfig.bpe_vocab_size must be an integer >= 256, got 10"),
        ("unknown device", [*base, "--device", "gpu", "--out", fresh], "TrainConfig.device must be a device name"),
        ("out holds a run", [*base, "--out", str(finished)], "already holds a run"),
        ("out is a file", [*base, "--out", str(tmp / "a_file")], "is a file, not a folder"),
        ("resume and overwrite", [*base, "--out", str(finished), "--resume", "--overwrite"], "choose one"),
        ("resume without a run", ["--out", str(tmp / "empty"), "--resume"], "nothing to resume: no checkpoint.pt in"),
        ("resume with another lr", ["--out", str(finished), "--resume", "--lr", "0.001"], "lr: 0.003 vs 0.001"),
        ("resume with fewer steps", ["--out", str(finished), "--resume", "--max-steps", "10"], "max_steps must be >= 40"),
        ("resume on an edited corpus", ["--out", str(finished), "--resume", "--corpus", str(edited)], "corpus content sha256:"),
        ("corrupt checkpoint", ["--out", str(corrupt), "--resume"], "is corrupt: its tensors do not match the checksum"),
        ("foreign checkpoint", ["--out", str(foreign), "--resume"], "is not a tinyformer checkpoint"),
        ("checkpoint without model", ["--out", str(nomodel), "--resume"], "its 'model' entry is missing"),
        ("checkpoint of another model", ["--out", str(other_model), "--resume"], "does not fit this model"),
        ("validation split too short", [*base, "--corpus", str(short), "--out", fresh], "the validation split has"),
        ("device not on this machine", [*base, "--device", "cuda:7", "--out", fresh], "'cuda:7'"),
    ]


def test_every_bad_input_is_one_error_line_and_exit_2(setup, tmp_path, capsys):
    cases = bad_inputs(setup, tmp_path)
    for what, argv, fragment in cases:
        code, err = run_main(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, f"{what}: exit {code}, stderr {err!r}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {err!r}"
        assert fragment in lines[0], f"{what}: {lines[0]!r} lacks {fragment!r}"
        assert "Traceback" not in err
    assert not (tmp_path / "fresh").exists()  # no bad input wrote anything
    print(f"bad inputs checked: {len(cases)}")


def test_argparse_errors_exit_2_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--max-steps", "five"])
    assert exc.value.code == 2 and "error: argument --max-steps: invalid int value: 'five'" in capsys.readouterr().err


def test_debug_shows_the_traceback(setup, tmp_path, monkeypatch):
    from tinyformer.train import ConfigError

    argv = ["--config", str(setup["config"]), "--grad-clip", "-1", "--out", str(tmp_path / "x")]
    with pytest.raises(ConfigError, match="grad_clip"):
        main([*argv, "--debug"])
    monkeypatch.setenv("TINYFORMER_DEBUG", "1")
    with pytest.raises(ConfigError, match="grad_clip"):
        main(argv)


def test_bad_input_from_a_real_process_prints_no_traceback(setup, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tinyformer.train", "--config", str(setup["config"]), "--corpus",
                           str(tmp_path), "--out", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: TrainConfig.corpus must be 'kjv', 'tinyshakespeare' or the path of a UTF-8 text file (this is a directory), got "
        f"'{tmp_path}' (str)"
    ]


# ---------------------------------------------------------------- issue 26: nothing silently wrong


def one_error_line(err: str) -> str:
    """The single ``error:`` line of a failed command (progress bars aside), with no traceback."""
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


def more_bad_inputs(setup, tmp: Path) -> list[tuple[str, list[str], str]]:
    config = setup["config"]
    duplicate = tmp / "duplicate.json"
    duplicate.write_text(config.read_text()[:-1] + ', "lr": 0.001, "lr": 0.1}')
    fresh = str(tmp / "fresh")
    return [
        ("empty --out (an unset $RUN_DIR)", ["--config", str(config), "--out", ""], "--out is empty"),
        ("duplicate key in a config file", ["--config", str(duplicate), "--out", fresh],
         f"config file {duplicate} sets 'lr' twice (0.001, then 0.1)"),
        ("corpus is a character device", ["--config", str(config), "--corpus", "/dev/zero", "--out", fresh],
         "(this is not a regular file but a character device)"),
        ("seed beyond 64 bits", ["--config", str(config), "--seed", str(2**64 - 1), "--out", fresh],
         "TrainConfig.seed must be an integer in [0, 2**63), got 18446744073709551615 (int); choose another --seed"),
        ("a batch that cannot fit in memory", ["--config", str(config), "--batch-size", "1000000000", "--out", fresh],
         "--batch-size 1000000000 cannot fit"),
    ]


def test_more_bad_inputs_are_one_error_line_and_exit_2(setup, tmp_path, capsys, monkeypatch):
    import tinyformer.train.loop as loop

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(loop, "random_starts", no_training)  # a refused batch must never reach a step
    monkeypatch.chdir(tmp_path)  # where an empty --out would write
    for what, argv, fragment in more_bad_inputs(setup, tmp_path):
        for check in ([], ["--check-config"]) if what.startswith("duplicate") else ([],):
            code, err = run_main([*argv, *check], capsys)
            assert code == 2, f"{what}: exit {code}, stderr {err!r}"
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {err!r}"
            assert fragment in lines[0], f"{what}: {lines[0]!r} lacks {fragment!r}"
    assert not (tmp_path / "fresh").exists() and not any(name in os.listdir(tmp_path) for name in
                                                        ("checkpoint.pt", "tokenizer.json"))


def test_empty_out_is_refused_by_the_library_too(setup):
    from tinyformer.train import ConfigError

    with pytest.raises(ConfigError, match=r"--out is empty"):
        train(TrainConfig(**run_config(setup["corpus"])), out_dir="", progress=False)


def test_batch_memory_refusal_names_the_remedy(setup, tmp_path, monkeypatch):
    import tinyformer.train.loop as loop
    from tinyformer.train import ConfigError

    monkeypatch.setattr(loop, "random_starts", lambda *a, **k: pytest.fail("training started"))
    cfg = TrainConfig(**{**run_config(setup["corpus"]), "batch_size": 10**9})
    with pytest.raises(ConfigError, match=r"--batch-size 1000000000 cannot fit: one step needs at least [\d,.]+ GiB"
                                          r".*use a smaller --batch-size, or .* --grad-accum-steps"):
        train(cfg, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_diverged_run_stops_with_one_line_and_keeps_the_last_finite_checkpoint(setup, tmp_path, capsys):
    from tinyformer.train import TrainingDiverged
    from tinyformer.train.cli import EXIT_DIVERGED

    out = tmp_path / "diverged"
    code = main(["--config", str(setup["config"]), "--lr", "1e30", "--min-lr", "0", "--checkpoint-interval", "1",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == EXIT_DIVERGED == 3, captured.err[-3000:]
    line = one_error_line(captured.err)
    assert re.match(r"error: training diverged at step \d+: the (loss is|gradient norm is|weights hold) (nan|inf|NaN)",
                    line), line
    assert "Lower --lr (now 1e+30) or --grad-clip" in line and "final val loss" not in captured.out
    payload = load_checkpoint(out / "checkpoint.pt")
    step = int(re.search(r"at step (\d+)", line).group(1))
    assert payload["iteration"] == step - 1 and f"(step {step - 1}), is kept" in line
    assert all(torch.isfinite(t).all() for t in payload["model"].values())
    assert not (out / "result.json").exists()
    # The library raises a named exception, and leaves the same finite checkpoint.
    cfg = TrainConfig(**{**run_config(setup["corpus"]), "lr": 1e30, "min_lr": 0.0})
    with pytest.raises(TrainingDiverged) as caught:
        train(cfg, out_dir=tmp_path / "lib", progress=False)
    assert caught.value.step >= 1 and caught.value.saved_step == load_checkpoint(
        tmp_path / "lib" / "checkpoint.pt")["iteration"]


# ---------------------------------------------------------------- corruption of every run file


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "random bytes":
        path.write_bytes(bytes([0xFF, 0xFE]) + random.Random(SEED).randbytes(len(data)))
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "iteration 40 -> 38":
        payload = torch.load(path, weights_only=True)
        payload["iteration"] = 38
        torch.save(payload, path)
    elif how == "one logged loss changed":
        payload = torch.load(path, weights_only=True)
        payload["extra"]["log"]["train_loss"][5] += 0.25
        torch.save(payload, path)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("name, how", [
    *[(name, how) for name in ("checkpoint.pt", "tokenizer.json", "log.csv", "result.json")
      for how in ("random bytes", "truncated", "empty")],
    ("checkpoint.pt", "iteration 40 -> 38"), ("checkpoint.pt", "one logged loss changed"),
])
def test_every_damaged_run_file_is_refused_by_name_or_repaired_on_resume(setup, tmp_path, capsys, name, how):
    """checkpoint.pt and tokenizer.json are the run: damage to either is one error line naming the
    file. log.csv and result.json are derived from the checkpoint: a resume writes them again."""
    out = tmp_path / "run"
    shutil.copytree(setup["reference"], out)
    _damage(out / name, how)
    code, err = run_main(["--out", str(out), "--resume"], capsys)
    if name in ("checkpoint.pt", "tokenizer.json"):
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(out / name) in lines[0], err
    else:
        assert code == 0, err
        assert (out / name).read_bytes() == (setup["reference"] / name).read_bytes()


# ---------------------------------------------------------------- a run killed before its first checkpoint


def test_a_run_killed_while_writing_its_first_checkpoint_is_started_over(setup, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(setup["reference"] / "tokenizer.json", out / "tokenizer.json")
    (out / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"\0" * 1000)  # what SIGKILL mid-write leaves
    code, err = run_main(["--out", str(out), "--resume"], capsys)
    assert code == 2 and "run the same command without --resume to start it over" in one_error_line(err)
    code, err = run_main(["--config", str(setup["config"]), "--out", str(out)], capsys)
    assert code == 0, err[-3000:]
    assert f"note: {out} holds a run stopped before its first checkpoint" in err
    assert (out / "log.csv").read_bytes() == (setup["reference"] / "log.csv").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.csv", "result.json", "tokenizer.json"]


# ---------------------------------------------------------------- interruptions at every phase

INJECT = '''
import os, signal, sys
import tinyformer.train.loop as loop
import tinyformer.train.prepare as prepare

phase, sig = sys.argv[1], getattr(signal, sys.argv[2])


def once(module, name, when):
    original, fired = getattr(module, name), []

    def wrapper(*args, **kwargs):
        if not fired and when(*args):
            fired.append(1)
            os.kill(os.getpid(), sig)  # handled at the next bytecode: inside this phase
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


if phase == "startup":
    once(prepare, "prepare_data", lambda *a: True)
elif phase == "first checkpoint":
    once(loop, "save_checkpoint", lambda path, model, opt, it, *a: it == 0)
elif phase == "checkpoint write":
    once(loop, "save_checkpoint", lambda path, model, opt, it, *a: it == 10)
elif phase == "evaluation":
    once(loop, "evaluate", lambda model, tokens, cfg, step, *a: step == 10)
from tinyformer.train.cli import command

command(sys.argv[3:])
'''


@pytest.mark.parametrize("phase, signame, stopped_at", [
    ("startup", "SIGINT", None), ("startup", "SIGTERM", None),
    ("first checkpoint", "SIGTERM", 0), ("first checkpoint", "SIGINT", 0),
    ("checkpoint write", "SIGINT", 11), ("evaluation", "SIGTERM", 11),
])
def test_an_interruption_at_every_phase_is_one_line_and_resumes_byte_for_byte(setup, tmp_path, phase, signame,
                                                                              stopped_at):
    script = tmp_path / "inject.py"
    script.write_text(INJECT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("TINYFORMER_SMOKE", None)
    out = tmp_path / "run"
    args = ["--config", str(setup["config"]), "--out", str(out)]
    proc = subprocess.run([sys.executable, str(script), phase, signame, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    signum = getattr(signal, signame)
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    messages = [line for line in proc.stderr.splitlines() if line.startswith("interrupted")]
    assert len(messages) == 1, proc.stderr[-3000:]
    if stopped_at is None:  # stopped before anything was written
        assert not out.exists()
        again = args
    else:
        assert f"interrupted: {signame} at step {stopped_at}: checkpoint saved" in messages[0]
        assert check_run_files(out, setup["reference"]) == stopped_at
        again = [*args, "--resume"]
    proc = subprocess.run([sys.executable, "-m", "tinyformer.train", *again], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("log.csv", "tokenizer.json"):
        assert (out / name).read_bytes() == (setup["reference"] / name).read_bytes(), name
    assert load_checkpoint(out / "checkpoint.pt")["checksum"] == load_checkpoint(setup["reference"] / "checkpoint.pt")["checksum"]


# ---------------------------------------------------------------- Ctrl-C at start-up and at exit


def test_ctrl_c_while_torch_is_imported_is_one_line_and_exit_130(tmp_path):
    from conftest import interrupt_while_importing_torch

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    returncode, lines, err = interrupt_while_importing_torch(
        ["tinyformer.train", "--out", str(tmp_path / "r"), "--check-config"], cwd=ROOT, env=env)
    assert returncode == 130, err[-3000:]
    assert lines == ["interrupted while starting (importing PyTorch); nothing was written"], lines


def test_ctrl_c_while_python_exits_is_one_line(tmp_path):
    """torch's exit handlers can take a while after a run (a compile-time report): a Ctrl-C then
    must not print a traceback from an exit handler."""
    script = tmp_path / "at_exit.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "from tinyformer.train.cli import command\n"
        "def slow_exit_handler():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(2)\n"
        "atexit.register(slow_exit_handler)\n"
        "command(sys.argv[1:])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "r"), "--check-config"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["interrupted while exiting; the run's files are complete"]
