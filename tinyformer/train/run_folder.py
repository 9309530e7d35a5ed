"""The run folder (``--out``): what a run writes, when it may write there, and how it stops.

A run never loses work:

- every file of a run (``tokenizer.json``, ``checkpoint.pt``, ``log.csv``, ``result.json``) is
  written atomically (:func:`tinyformer.files.atomic_write_bytes`), and only once the
  configuration, the data sizes and the device have been checked; temporary files left by a
  killed writer are removed when a run starts;
- SIGINT (Ctrl-C) or SIGTERM finishes the current step, writes a checkpoint and stops
  (:class:`StopOnSignal`, :class:`TrainingInterrupted`);
- an ``--out`` that already holds a run is refused unless ``resume`` or ``overwrite``.

Resuming checks what matters: the corpus by the sha256 of its text, the tokenizer and the model
config must be the ones in the checkpoint, and so must every TrainConfig field except those in
:data:`RESUMABLE_FIELDS`.

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import sys
import tempfile
import threading
from pathlib import Path

from ..checkpoints import config_differences, load_checkpoint
from ..data import Corpus
from ..files import atomic_write_bytes, remove_stale_temp_files
from ..tokenizer import load_tokenizer
from .config import ConfigError, TrainConfig

__all__ = [
    "RUN_FILES",
    "RESUMABLE_FIELDS",
    "ResumeError",
    "TrainingInterrupted",
    "StopOnSignal",
    "prepare_out_dir",
    "read_checkpoint_to_resume",
    "check_resumable",
    "start_run_folder",
    "check_out_name",
    "stopped_before_first_checkpoint",
    "write_log",
    "write_result",
    "tokenizer_json",
    "tokenizer_from_json",
    "finite_or_none",
    "none_to_nan",
]

RUN_FILES = ("tokenizer.json", "checkpoint.pt", "log.csv", "result.json")
_RESUME_KEYS = ("train_config", "sampler_state", "log", "corpus_sha256", "tokenizer")
# TrainConfig fields that may change on resume (the corpus as a path, when its text is the same).
RESUMABLE_FIELDS = ("max_steps", "device", "compile", "checkpoint_interval", "eval_interval", "corpus",
                    "grad_accum_steps", "dist_timeout")


class ResumeError(ValueError):
    """A run that cannot be resumed with this configuration, corpus or tokenizer."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training; a checkpoint at ``step`` was saved first (on several
    processes, all stopped after that step; ``rank`` and ``world_size`` say which this is)."""

    def __init__(self, step: int, signum: int, checkpoint: Path | None, rank: int = 0, world_size: int = 1):
        self.step, self.signum, self.checkpoint = step, signum, checkpoint
        self.rank, self.world_size = rank, world_size
        saved = f"checkpoint saved to {checkpoint}" if checkpoint else "nothing saved (no output folder)"
        super().__init__(f"{signal.Signals(signum).name} at step {step}: {saved}")


def check_out_name(out_dir) -> None:
    """An empty ``--out`` (an unset ``$RUN_DIR``) would be the current folder: refuse it."""
    if isinstance(out_dir, str) and out_dir == "":
        raise ConfigError("--out is empty (an unset shell variable such as $RUN_DIR?): name the folder for the "
                          "run's files, e.g. --out runs/mine (--out . if you mean the current folder)")


def stopped_before_first_checkpoint(out: Path) -> bool:
    """True when ``out`` holds what a run killed before its first checkpoint was complete leaves:
    ``tokenizer.json`` (written just before that checkpoint) and no other run file. Nothing of such
    a run can be resumed or lost: the same command starts it over."""
    return [name for name in RUN_FILES if (out / name).exists()] == ["tokenizer.json"]


def prepare_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot be used: a file, ``resume`` and ``overwrite`` together, nothing
    to resume, or a run already there without ``resume`` or ``overwrite`` (a run stopped before its
    first checkpoint does not count: it is started over). Writes nothing."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: choose one")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            why = (" (the run there stopped before its first checkpoint was written: run the same command without "
                   "--resume to start it over)" if stopped_before_first_checkpoint(out) else "")
            raise FileNotFoundError(f"nothing to resume: no checkpoint.pt in {out}{why}")
        return
    if stopped_before_first_checkpoint(out):
        return
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(existing)}): pass --resume to continue it, --overwrite to "
            f"replace it, or choose another --out"
        )


def check_resumable(saved_cfg: dict, cfg: TrainConfig, saved_corpus_sha: str | None, corpus: Corpus, where) -> None:
    """Refuse to resume with a config that differs in a field outside :data:`RESUMABLE_FIELDS`, or
    with a corpus whose text changed; the error names each difference with both values."""
    now = cfg.to_dict()
    diffs = config_differences({k: v for k, v in saved_cfg.items() if k not in RESUMABLE_FIELDS},
                               {k: v for k, v in now.items() if k not in RESUMABLE_FIELDS})
    if saved_corpus_sha != corpus.sha256:
        diffs.append(f"corpus content sha256: {saved_corpus_sha} vs {corpus.sha256} ({corpus.source})")
    if diffs:
        raise ResumeError(
            f"cannot resume {where}: it was written by a different TrainConfig or corpus (checkpoint vs now): "
            + "; ".join(diffs)
            + f". Only {', '.join(RESUMABLE_FIELDS)} may change on resume"
        )


def read_checkpoint_to_resume(out: Path, cfg: TrainConfig) -> dict:
    """The checkpoint in ``out``, checked to be a run of tinyformer.train that ``cfg`` can continue
    (its config and corpus are checked later, by :func:`check_resumable`, once the corpus is read)."""
    saved = load_checkpoint(out / "checkpoint.pt")
    missing = [k for k in _RESUME_KEYS if k not in saved["extra"]]
    if missing:
        raise ResumeError(f"{out / 'checkpoint.pt'} cannot be resumed: it was not written by "
                          f"tinyformer.train (no {', '.join(missing)})")
    done_before = saved["iteration"]
    if cfg.max_steps < done_before:
        raise ResumeError(f"cannot resume {out} with max_steps {cfg.max_steps}: the run has already taken "
                          f"{done_before} steps; max_steps must be >= {done_before}")
    return saved


def check_saved_tokenizer(out: Path, saved_text: str) -> None:
    """On resume, ``tokenizer.json`` (if there) must be the tokenizer saved in the checkpoint
    (compared as bytes: a damaged file is named, whatever it holds)."""
    path = out / "tokenizer.json"
    try:
        on_disk = path.read_bytes() if path.exists() else None
    except OSError as exc:
        raise ResumeError(f"cannot resume {out}: {path} cannot be read ({exc.strerror or exc})") from None
    if on_disk is not None and on_disk != saved_text.encode("utf-8"):
        raise ResumeError(f"cannot resume {out}: {path} differs from the tokenizer saved in checkpoint.pt (was it "
                          f"replaced or damaged?); delete it (the run writes it again from the checkpoint), restore "
                          f"it, or start again with --overwrite")


def start_run_folder(out: Path, resume: bool, finished: bool, tokenizer_text: str) -> None:
    """Everything is checked: from here on files are written (by rank 0). Removes a killed writer's
    temporary files and a stale ``result.json`` (it marks a finished run); a new run also drops an
    old ``log.csv`` and writes ``tokenizer.json`` (a resumed one only if it is missing)."""
    if not resume and stopped_before_first_checkpoint(out):
        print(f"note: {out} holds a run stopped before its first checkpoint (tokenizer.json only): starting it "
              f"over", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out, RUN_FILES)
    if not resume or not finished:
        (out / "result.json").unlink(missing_ok=True)
    if not resume:
        (out / "log.csv").unlink(missing_ok=True)
    if not resume or not (out / "tokenizer.json").exists():
        atomic_write_bytes(out / "tokenizer.json", tokenizer_text.encode("utf-8"))


class StopOnSignal:
    """While active, SIGINT and SIGTERM only set ``signum``: the loop finishes its step, saves
    and stops. A second signal raises KeyboardInterrupt at once, unless ``second_stops`` is
    False: under torchrun one Ctrl-C reaches a worker twice (from the terminal, and forwarded by
    the launcher, which kills the workers itself 30 s later), and a worker that stopped at once
    would leave the others waiting and save nothing."""

    def __init__(self, second_stops: bool = True):
        self.signum = None
        self.previous = {}
        self.second_stops = second_stops

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and self.second_stops:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once")
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def write_log(out: Path, log: dict) -> None:
    """``log.csv``: one row per step (step, lr, train_loss, and val_loss where it was evaluated).
    It is derived from the checkpoint's log: a resume writes it again, so a damaged copy is repaired."""
    val = dict(zip(log["val_step"], log["val_loss"]))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["step", "lr", "train_loss", "val_loss"])
    for s, lr, tl in zip(log["step"], log["lr"], log["train_loss"]):
        writer.writerow([s, f"{lr:.6g}", f"{tl:.6f}", f"{val[s]:.6f}" if s in val else ""])
    atomic_write_bytes(out / "log.csv", buffer.getvalue().encode("utf-8"))


def write_result(out: Path, summary: dict, log: dict, cfg: TrainConfig) -> None:
    """``result.json``: the summary of a finished run, its log and its config (NaN written as null)."""
    text = json.dumps(finite_or_none({**summary, "log": log, "train_config": cfg.to_dict()}), indent=1, allow_nan=False)
    atomic_write_bytes(out / "result.json", text.encode("utf-8"))


def tokenizer_json(tokenizer) -> str:
    """The tokenizer's file content, checked by loading it back (a tokenizer that cannot be
    read back must not be written next to a checkpoint)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        tokenizer.save(path)
        text = path.read_text(encoding="utf-8")
        if load_tokenizer(path).vocab_size != tokenizer.vocab_size:
            raise ValueError("the tokenizer does not survive a save/load round trip")
    return text


def tokenizer_from_json(text: str, where: str = "the checkpoint"):
    """The tokenizer whose file content is ``text`` (as saved in ``where``, a checkpoint)."""
    if not isinstance(text, str):
        raise ResumeError(f"{where} holds no readable tokenizer (its 'tokenizer' entry is a {type(text).__name__})")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(text, encoding="utf-8")
        try:
            return load_tokenizer(path)
        except (ValueError, TypeError, KeyError) as exc:
            raise ResumeError(f"{where} holds a tokenizer that cannot be read: {exc}") from None


def finite_or_none(obj):
    """JSON has no NaN or Infinity: write null for them (and read null back as NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def none_to_nan(values: list) -> list:
    """Read back what :func:`finite_or_none` wrote: null -> NaN."""
    return [float("nan") if v is None else v for v in values]
