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
