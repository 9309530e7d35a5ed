"""Train a TransformerLM on a text: ``python -m tinyformer.train --help``.

The loop: sample random windows, cross-entropy of next-token predictions, AdamW
with warmup + cosine learning rate and global-norm clipping; evaluate on held-out
text every ``eval_interval`` steps; write a CSV log and atomic checkpoints.
Resuming from a checkpoint restores the model, the optimiser and the batch
sampler's random state, so the run continues the same loss trajectory bit for bit
(on CPU, in one process).

A run never loses work:

- every file of a run (``tokenizer.json``, ``checkpoint.pt``, ``log.csv``,
  ``result.json``) is written atomically (temporary file, then rename), and only once
  the configuration, the data sizes and the device have been checked; temporary files
  left by a killed writer are removed when a run starts;
- a checkpoint is written before the first step, every ``checkpoint_interval`` steps
  (default 50) and at the end; SIGINT (Ctrl-C) or SIGTERM finishes the current step,
  writes a checkpoint and stops (a second Ctrl-C stops at once);
- ``--out`` that already holds a run is refused unless ``--resume`` or ``--overwrite``.

Resuming checks what matters: the corpus by the sha256 of its text, the tokenizer
and the model config must be the ones in the checkpoint, and so must every
TrainConfig field except those in :data:`RESUMABLE_FIELDS` (``max_steps``, ``device``,
``compile``, ``checkpoint_interval``, ``eval_interval``, ``grad_accum_steps``,
``dist_timeout``, and ``corpus`` as a path when its content is the same). A refusal
names each differing field with both values.

**A longer run on resume.** The learning rate of every step is a pure function of the
step and the current config: ``cosine_lr_schedule(step, lr, min_lr, warmup_steps,
max_steps)``. Resuming with a larger ``max_steps`` therefore continues on the schedule
of the longer run: steps already taken keep the lr they had (the log records it), and
every later step gets the lr a run planned for the new ``max_steps`` has at that step.
A run that had finished its decay restarts from ``min_lr`` at that higher lr, a warm
restart in the sense of SGDR (Loshchilov & Hutter, 2017); a run stopped half-way joins
the longer cosine without a restart when the two schedules meet. Nothing about the
schedule is stored, so two resumes with the same ``max_steps`` always agree.
``max_steps`` below the steps already taken is refused.

**Several processes or GPUs.** The same command runs under torchrun, one process per CPU
share or GPU (``--device cuda`` gives each process the GPU of its LOCAL_RANK)::

    torchrun --standalone --nproc_per_node=2 -m tinyformer.train --config configs/book.json --out runs/book-2p
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=seed003 -m tinyformer.train --config configs/seed003_gpu.json --out /shared/runs/seed003

(the second on each of two machines; ``--out`` must be a folder all of them see).

``--batch-size`` is the global batch of one step; each of N processes trains on its share of
it (batch_size / N windows, in ``--grad-accum-steps`` micro-batches), drawn from one seeded
stream, and DistributedDataParallel averages their gradients, so N processes take the steps
one process takes with the whole batch. Rank 0 writes every file; a checkpoint resumes on
any number of processes (``grad_accum_steps`` and ``dist_timeout`` may change on resume).
A process that dies or hangs stops the others within ``--dist-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .files import library_hash, package_hash
from .data import Corpus, default_cache_dir, load_corpus, train_val_split
from .model import PRESETS, TransformerConfig, TransformerLM, count_parameters, preset
from .tokenizer import BPETokenizer, CharTokenizer, load_tokenizer
from .batches import random_starts, windows
from .checkpoints import CheckpointError, config_differences, load_checkpoint, restore_checkpoint, save_checkpoint
from .files import atomic_write_bytes, remove_stale_temp_files
from .losses import cross_entropy
from .optim import AdamW, clip_grad_norm, cosine_lr_schedule, make_optimizer
from .distributed import DistributedError, World, process_group, sync_gradients, world_from_env, wrap_model

__all__ = [
    "BOOK_RUN",
    "SEED003_GPU_RUN",
    "RESUMABLE_FIELDS",
    "RUN_FILES",
    "TrainConfig",
    "ConfigError",
    "ResumeError",
    "TrainingInterrupted",
    "train",
    "ngram_baselines",
    "load_or_train",
    "package_hash",
    "prepare_data",
    "check_data_sizes",
    "smoke_scaled",
    "main",
]

RUN_FILES = ("tokenizer.json", "checkpoint.pt", "log.csv", "result.json")
_RESUME_KEYS = ("train_config", "sampler_state", "log", "corpus_sha256", "tokenizer")
RESUMABLE_FIELDS = ("max_steps", "device", "compile", "checkpoint_interval", "eval_interval", "corpus",
                    "grad_accum_steps", "dist_timeout")


class ConfigError(ValueError):
    """A configuration, a command-line value or an output folder that cannot be used."""


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


# Allowed ranges, checked on construction. ints: minimum value.
_INT_MINIMUM = {"bpe_vocab_size": 256, "batch_size": 1, "grad_accum_steps": 1, "max_steps": 1, "warmup_steps": 0,
                "eval_interval": 1, "eval_batches": 1, "checkpoint_interval": 0, "seed": 0}
_CHOICES = {"tokenizer": ("char", "bpe"), "dtype": ("float32", "bfloat16")}


NAMED_CORPORA = ("kjv", "tinyshakespeare")  # the names tinyformer.data.load_corpus resolves


@dataclass
class TrainConfig:
    """Everything that determines a training run (and so its cache key).

    Every field is checked on construction (type and range); a bad value raises
    ConfigError naming the field, the value and what is allowed.
    """

    preset: str = "book-small"
    model_overrides: dict = field(default_factory=dict)
    corpus: str = "kjv"  # "kjv", "tinyshakespeare" (sha256-pinned) or a path to a UTF-8 text file
    tokenizer: str = "char"  # "char" or "bpe"
    bpe_vocab_size: int = 1024
    val_fraction: float = 0.1
    # The global batch: windows per optimiser step, over all processes and accumulation steps.
    # Each process runs batch_size / (processes x grad_accum_steps) windows at a time.
    batch_size: int = 32
    grad_accum_steps: int = 1
    max_steps: int = 500
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_interval: int = 50
    eval_batches: int = 16
    # Steps between checkpoints (0: only before the first step, at the end and on SIGINT/SIGTERM).
    # 50 bounds what a crash or SIGKILL can lose to 50 steps, for a write that costs well under 1%
    # of the book's run time.
    checkpoint_interval: int = 50
    seed: int = 1337
    device: str = "cpu"
    dtype: str = "float32"  # "bfloat16" uses autocast on CUDA
    compile: bool = False
    # Seconds a process waits for the others (rendezvous, each gradient average, checkpoint writes
    # by rank 0) before it stops with an error. Only used when torchrun starts several processes.
    dist_timeout: float = 600.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range (also after fields were assigned by hand)."""

        def fail(name: str, allowed: str):
            value = getattr(self, name)
            raise ConfigError(f"TrainConfig.{name} must be {allowed}, got {value!r} ({type(value).__name__})")

        for name, minimum in _INT_MINIMUM.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                fail(name, f"an integer >= {minimum}")
        numbers = {"lr": "a finite number > 0", "min_lr": "a finite number >= 0", "weight_decay": "a finite number >= 0",
                   "grad_clip": "a finite number > 0", "val_fraction": "a number in (0, 1)",
                   "dist_timeout": "a finite number of seconds > 0"}
        for name, allowed in numbers.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(name, allowed)
            ok = {"lr": value > 0, "min_lr": value >= 0, "weight_decay": value >= 0, "grad_clip": value > 0,
                  "val_fraction": 0 < value < 1, "dist_timeout": value > 0}[name]
            if not ok:
                fail(name, allowed)
            setattr(self, name, float(value))
        if self.min_lr > self.lr:
            fail("min_lr", f"<= lr ({self.lr}) (the schedule decays from lr to min_lr)")
        if self.batch_size % self.grad_accum_steps:
            fail("grad_accum_steps", f"a divisor of batch_size ({self.batch_size}): each step splits its batch into "
                                     f"grad_accum_steps equal micro-batches")
        if self.warmup_steps > self.max_steps:
            fail("warmup_steps", f"<= max_steps ({self.max_steps})")
        betas = self.betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1 for b in betas)
        ):
            fail("betas", "two numbers in [0, 1), e.g. [0.9, 0.95]")
        self.betas = (float(betas[0]), float(betas[1]))
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                fail(name, f"one of {allowed}")
        if not isinstance(self.compile, bool):
            fail("compile", "true or false")
        if not isinstance(self.device, str):
            fail("device", "a device name such as 'cpu', 'cuda' or 'cuda:1'")
        try:
            kind = torch.device(self.device).type
        except RuntimeError:
            kind = None
        if kind not in ("cpu", "cuda", "mps"):
            fail("device", "a device name such as 'cpu', 'cuda' or 'cuda:1'")
        if not isinstance(self.corpus, str) or not self.corpus:
            fail("corpus", "'kjv', 'tinyshakespeare' or the path of a UTF-8 text file")
        if self.corpus not in NAMED_CORPORA:
            path = Path(self.corpus)
            if path.is_dir():
                fail("corpus", "'kjv', 'tinyshakespeare' or the path of a UTF-8 text file (this is a directory)")
            if not path.is_file():
                fail("corpus", "'kjv', 'tinyshakespeare' or the path of a UTF-8 text file (there is no file at this path)")
        if not isinstance(self.preset, str) or self.preset not in PRESETS:
            fail("preset", f"one of {sorted(PRESETS)}")
        if not isinstance(self.model_overrides, dict) or not all(isinstance(k, str) for k in self.model_overrides):
            fail("model_overrides", "a dict of TransformerConfig fields")
        unknown = sorted(set(self.model_overrides) - set(TransformerConfig.__dataclass_fields__))
        if unknown:
            fail("model_overrides", f"a dict of TransformerConfig fields (unknown: {unknown})")
        try:
            preset(self.preset, **self.model_overrides)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"TrainConfig.model_overrides {self.model_overrides!r} give an invalid model: {exc}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a TrainConfig is read from a JSON object (dict), got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields: {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


# The run the book trains at build time (about a minute on 2 CPU cores): character-level
# KJV, the modern book-small decoder. The training, sampling and inside-the-model
# chapters all use this one definition; `--config configs/book.json` is the same run
# from the command line (a test keeps the two equal).
BOOK_RUN = TrainConfig(
    preset="book-small", tokenizer="char", batch_size=32, max_steps=270, lr=3e-3, min_lr=3e-4,
    warmup_steps=30, eval_interval=50, eval_batches=10,
)

# Seed 003's ~25M model, for a GPU: python -m tinyformer.train --config configs/seed003_gpu.json
SEED003_GPU_RUN = TrainConfig(
    preset="seed003-25m", tokenizer="bpe", bpe_vocab_size=6144, batch_size=64, max_steps=5000, lr=6e-4,
    min_lr=6e-5, warmup_steps=200, eval_interval=250, eval_batches=20, checkpoint_interval=1000,
    device="cuda", dtype="bfloat16", compile=True,
)




def _make_tokenizer(cfg: TrainConfig, text: str, progress: bool = False):
    if cfg.tokenizer == "char":
        return CharTokenizer.from_text(text)
    if cfg.tokenizer == "bpe":
        return BPETokenizer.train(text, cfg.bpe_vocab_size, progress=progress)
    raise ConfigError(f"unknown tokenizer {cfg.tokenizer!r}: expected 'char' or 'bpe'")


def prepare_data(cfg: TrainConfig, tokenizer=None, progress: bool = False, corpus: Corpus | None = None):
    """Corpus -> tokenizer -> (train tokens, val tokens), all deterministic.

    Pass ``tokenizer`` to reuse one already trained for this config instead of training it
    again (and ``corpus`` to reuse a loaded corpus).
    """
    corpus = corpus or load_corpus(cfg.corpus)
    if tokenizer is None:
        tokenizer = _make_tokenizer(cfg, corpus.text, progress=progress)
    tokens = np.asarray(tokenizer.encode(corpus.text), dtype=np.int32)
    train_tokens, val_tokens = train_val_split(tokens, cfg.val_fraction)
    return corpus, tokenizer, train_tokens, val_tokens


def check_data_sizes(cfg: TrainConfig, context_length: int, train_tokens, val_tokens) -> None:
    """Both splits must hold at least one window of ``context_length + 1`` tokens (batches are
    drawn with replacement, so one window is enough for any batch size). Checked before the
    first step: a short validation split must not surface at the first evaluation."""
    need = context_length + 1
    total = len(train_tokens) + len(val_tokens)
    for split, tokens, fix in (
        ("training", train_tokens, "a smaller val_fraction"),
        ("validation", val_tokens, "a larger val_fraction"),
    ):
        if len(tokens) < need:
            raise ConfigError(
                f"the {split} split has {len(tokens)} tokens (val_fraction {cfg.val_fraction} of {total}), but one "
                f"window of context_length {context_length} needs {need}: use a longer corpus, {fix}, or a smaller "
                f"context_length (model_overrides)"
            )


def ngram_baselines(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int, alpha: float = 0.1) -> dict:
    """Validation cross-entropy (nats/token) of add-alpha unigram and bigram models.

    A Transformer that cannot beat counting pairs has learned nothing about context.
    """
    train_t = torch.as_tensor(train_tokens.astype(np.int64))
    val_t = torch.as_tensor(val_tokens.astype(np.int64))
    unigram = torch.bincount(train_t, minlength=vocab_size).double() + alpha
    unigram_logp = (unigram / unigram.sum()).log()
    pairs = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    pairs.index_put_((train_t[:-1], train_t[1:]), torch.ones(len(train_t) - 1, dtype=torch.float64), accumulate=True)
    bigram_logp = ((pairs + alpha) / (pairs + alpha).sum(dim=1, keepdim=True)).log()
    return {
        "unigram": cross_entropy(unigram_logp.expand(len(val_t), -1), val_t).item(),
        "bigram": cross_entropy(bigram_logp[val_t[:-1]], val_t[1:]).item(),
    }


@torch.no_grad()
def evaluate(model, tokens, cfg: TrainConfig, step: int, world: World = World(), device: str | None = None) -> float:
    """Mean loss on ``eval_batches`` windows drawn by a generator seeded from the step,
    so evaluation never disturbs (or depends on) the training sampler.

    Each batch is evaluated in the training step's pieces: on several ranks each takes its rows
    (micro-batch by micro-batch) and the ranks average their means, which is the mean one
    process computes over the same windows (the pieces are equal in size)."""
    device = device or cfg.device
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 1_000_003 + step)
    context = model.config.context_length
    pieces = world.micro_batches(cfg.batch_size, cfg.grad_accum_steps)
    losses = []
    for _ in range(cfg.eval_batches):
        starts = random_starts(len(tokens), cfg.batch_size, context, generator=g)
        parts = [cross_entropy(model(x).float(), y).item()
                 for x, y in (windows(tokens, starts[rows], context, device) for rows in pieces)]
        losses.append(sum(parts) / len(parts))
    losses = [loss / world.size for loss in world.sum(losses, f"evaluation at step {step}")]
    model.train()
    return float(np.mean(losses))


def _autocast(cfg: TrainConfig):
    if cfg.dtype == "bfloat16":
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


def _check_device(device: str) -> None:
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available here: torch.cuda.is_available() is False "
                          f"(torch {torch.__version__}); use --device cpu")
    if kind == "cuda" and torch.device(device).index is not None and torch.device(device).index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} is not available here: torch.backends.mps.is_available() is False")


def _tokenizer_json(tokenizer) -> str:
    """The tokenizer's file content, checked by loading it back (a tokenizer that cannot be
    read back must not be written next to a checkpoint)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        tokenizer.save(path)
        text = path.read_text(encoding="utf-8")
        if load_tokenizer(path).vocab_size != tokenizer.vocab_size:
            raise ValueError("the tokenizer does not survive a save/load round trip")
    return text


def _tokenizer_from_json(text: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(text, encoding="utf-8")
        return load_tokenizer(path)


def _finite_or_none(obj):
    """JSON has no NaN or Infinity: write null for them (and read null back as NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _none_to_nan(values: list) -> list:
    return [float("nan") if v is None else v for v in values]


def _prepare_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: choose one")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint.pt in {out}")
        return
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(existing)}): pass --resume to continue it, --overwrite to "
            f"replace it, or choose another --out"
        )


def _check_resumable(saved_cfg: dict, cfg: TrainConfig, saved_corpus_sha: str | None, corpus: Corpus, where) -> None:
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


class _StopOnSignal:
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


@dataclass
class _Setup:
    """Everything a run needs before its first step, built and checked without writing a file."""

    corpus: Corpus
    tokenizer: object
    tokenizer_text: str
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    model_config: TransformerConfig
    model: TransformerLM
    optimizer: torch.optim.Optimizer
    sampler: torch.Generator
    log: dict
    start_step: int
    seconds_before: float
    tokens_before: int


def _setup(cfg: TrainConfig, device: str, out: Path | None, resume: bool, overwrite: bool, data, progress: bool) -> _Setup:
    """Check the output folder, the checkpoint to resume, the device and the data, and build the
    model, optimiser and sampler (restored on resume). Reads files, never writes one."""
    saved = None
    if out is not None:
        _prepare_out_dir(out, resume, overwrite)
        if resume:
            saved = load_checkpoint(out / "checkpoint.pt")
            missing = [k for k in _RESUME_KEYS if k not in saved["extra"]]
            if missing:
                raise ResumeError(f"{out / 'checkpoint.pt'} cannot be resumed: it was not written by "
                                  f"tinyformer.train (no {', '.join(missing)})")
            done_before = saved["iteration"]
            if cfg.max_steps < done_before:
                raise ResumeError(f"cannot resume {out} with max_steps {cfg.max_steps}: the run has already taken "
                                  f"{done_before} steps; max_steps must be >= {done_before}")
    _check_device(device)

    # Data: on resume, the saved tokenizer (checked against the corpus by its hash).
    if saved is not None:
        extra = saved["extra"]
        corpus = data[0] if data else load_corpus(cfg.corpus)
        _check_resumable(extra["train_config"], cfg, extra.get("corpus_sha256"), corpus, out)
        saved_tokenizer = _tokenizer_from_json(extra["tokenizer"])
        on_disk = (out / "tokenizer.json").read_text(encoding="utf-8") if (out / "tokenizer.json").exists() else None
        if on_disk is not None and on_disk != extra["tokenizer"]:
            raise ResumeError(f"cannot resume {out}: tokenizer.json differs from the tokenizer saved in checkpoint.pt "
                              f"(was it replaced?); restore it or start again with --overwrite")
        if data and _tokenizer_json(data[1]) != extra["tokenizer"]:
            raise ResumeError(f"cannot resume {out}: the tokenizer passed in data differs from the one in checkpoint.pt")
        if not data:
            data = prepare_data(cfg, tokenizer=saved_tokenizer, corpus=corpus)
    corpus, tokenizer, train_tokens, val_tokens = data or prepare_data(cfg, progress=progress)
    model_config = preset(cfg.preset, **{**cfg.model_overrides, "vocab_size": tokenizer.vocab_size})
    check_data_sizes(cfg, model_config.context_length, train_tokens, val_tokens)

    torch.manual_seed(cfg.seed)  # every rank builds the same initial weights (DDP broadcasts rank 0's anyway)
    model = TransformerLM(model_config).to(device)
    # No weight decay on norm gains and biases (training.param_groups); our own AdamW.
    optimizer = make_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sampler = torch.Generator().manual_seed(cfg.seed)  # one stream of global batches, drawn alike on every rank
    setup = _Setup(corpus, tokenizer, _tokenizer_json(tokenizer), train_tokens, val_tokens, model_config, model,
                   optimizer, sampler, log={"step": [], "lr": [], "train_loss": [], "val_step": [], "val_loss": []},
                   start_step=0, seconds_before=0.0, tokens_before=0)
    if saved is not None:
        restore_checkpoint(saved, model, optimizer, str(out / "checkpoint.pt"))  # checks the model config too
        sampler.set_state(saved["extra"]["sampler_state"])
        setup.start_step = saved["iteration"]
        setup.log = saved["extra"]["log"]
        setup.seconds_before = float(saved["extra"].get("seconds", 0.0))
        setup.tokens_before = int(saved["extra"].get("tokens_seen", 0))
    return setup


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    data=None,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Run (or resume) training. Returns a dict with the model, tokenizer, log and losses.

    ``out_dir`` receives ``log.csv``, ``checkpoint.pt``, ``tokenizer.json`` and
    ``result.json``; if it already holds a run, pass ``resume=True`` to continue it or
    ``overwrite=True`` to replace it. ``data``: the tuple :func:`prepare_data` returns, to
    skip preparing it again. ``stop_after`` ends the run early at that step (as if
    interrupted) after writing a checkpoint: used to test resuming.

    Started by torchrun (``WORLD_SIZE`` > 1 in the environment), every process calls this with
    the same arguments: each trains on its share of every global batch (see
    :mod:`tinyformer.distributed`), rank 0 alone writes the files, and all return the same log.

    Raises ConfigError / ResumeError (both ValueError) for a configuration, folder or data
    that cannot be used, before anything is written; TrainingInterrupted (a
    KeyboardInterrupt) after saving a checkpoint when SIGINT or SIGTERM arrives;
    DistributedError when the processes cannot meet, or one of them dies or hangs for longer
    than ``cfg.dist_timeout`` seconds.
    """
    cfg.validate()
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ConfigError(f"stop_after must be an integer >= 1 or None, got {stop_after!r}")
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ConfigError("resume=True needs the out_dir of the run to continue")
    # Checked before the processes meet, identically on every rank: a bad split fails them all at once.
    world = world_from_env(timeout=cfg.dist_timeout)
    try:
        world.micro_batches(cfg.batch_size, cfg.grad_accum_steps)
        device = world.device(cfg.device)
    except ValueError as exc:
        raise ConfigError(f"TrainConfig.batch_size/device do not fit {world.size} process(es): {exc}") from None
    if world.distributed:
        _check_device(device)
    with process_group(world, device):
        return _train(cfg, world, device, out, resume, progress, data, stop_after, overwrite)


def _train(cfg: TrainConfig, world: World, device: str, out: Path | None, resume: bool, progress: bool, data,
           stop_after: int | None, overwrite: bool) -> dict:
    # Every rank checks; if any fails, all stop with its error, before a file is written.
    s = world.everywhere(lambda: _setup(cfg, device, out, resume, overwrite, data, progress and world.is_main),
                         "checking the configuration, the output folder and the data")
    model, optimizer, sampler, log = s.model, s.optimizer, s.sampler, s.log
    start_step, tokens_before, context = s.start_step, s.tokens_before, s.model_config.context_length
    tokens_seen = 0

    # Training time over all sessions, up to the end of the last completed step (so the checkpoint and
    # result.json agree, and a resume that trains nothing adds nothing).
    clock = {"seconds": s.seconds_before}

    def write_checkpoint(step: int) -> None:
        if out is None:
            return
        save_checkpoint(
            out / "checkpoint.pt",
            model,
            optimizer,
            step,
            config=s.model_config.to_dict(),
            extra={"train_config": cfg.to_dict(), "sampler_state": sampler.get_state(), "log": log,
                   "corpus_sha256": s.corpus.sha256, "tokenizer": s.tokenizer_text, "seconds": clock["seconds"],
                   "tokens_seen": tokens_before + tokens_seen},
        )
        _write_log(out, log)

    def start_files() -> None:
        """Everything is checked: from here on files are written (by rank 0)."""
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out, RUN_FILES)
        if not resume or start_step < cfg.max_steps:
            (out / "result.json").unlink(missing_ok=True)  # result.json marks a finished run
        if not resume:
            (out / "log.csv").unlink(missing_ok=True)
            atomic_write_bytes(out / "tokenizer.json", s.tokenizer_text.encode("utf-8"))
            write_checkpoint(0)  # from now on the run can always be resumed
        elif not (out / "tokenizer.json").exists():
            atomic_write_bytes(out / "tokenizer.json", s.tokenizer_text.encode("utf-8"))

    world.on_main(start_files, "writing the first files of the run")
    ddp_model = wrap_model(model, world, device)  # the model itself in one process
    step_fn = torch.compile(ddp_model) if cfg.compile else ddp_model
    micro_batches = world.micro_batches(cfg.batch_size, cfg.grad_accum_steps)  # this rank's rows of each batch
    # The handlers go in before the progress bar prints its first count: a signal aimed at that
    # count (a resumed run prints its starting step at once) then still stops after one clean step.
    with _StopOnSignal(second_stops=not world.distributed) as stop:
        bar = None
        if progress and world.is_main and start_step < cfg.max_steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=start_step, desc="training", unit="step")
        model.train()
        last_saved = start_step
        t0 = time.perf_counter()
        for step in range(start_step, cfg.max_steps):
            done = step + 1
            lr = cosine_lr_schedule(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # The global batch: the same draw on every rank, whatever their number; each trains on its rows.
            starts = random_starts(len(s.train_tokens), cfg.batch_size, context, generator=sampler)
            optimizer.zero_grad(set_to_none=True)
            for i, rows in enumerate(micro_batches):
                x, y = windows(s.train_tokens, starts[rows], context, device)
                with sync_gradients(ddp_model, sync=i == len(micro_batches) - 1):
                    with _autocast(cfg):
                        loss = cross_entropy(step_fn(x).float(), y)
                    # Each micro-batch's mean loss / accum_steps: the gradients add up to the whole batch's.
                    with world.collective(f"step {done} (averaging gradients)"):
                        (loss / cfg.grad_accum_steps).backward()
                summed = loss.detach() if i == 0 else summed + loss.detach()
            clip_grad_norm(model.parameters(), cfg.grad_clip)
            optimizer.step()
            tokens_seen += cfg.batch_size * context
            # One meeting per step: the batch's loss over all ranks, and whether any rank was told to stop
            # (all ranks must stop after the same step, or the others would wait for it forever).
            loss_sum, n_sigint, n_sigterm = world.sum(
                [summed.item() / cfg.grad_accum_steps, float(stop.signum == signal.SIGINT),
                 float(stop.signum == signal.SIGTERM)], f"step {done} (sharing the loss)")
            train_loss = loss_sum / world.size
            signum = stop.signum or (signal.SIGINT if n_sigint else signal.SIGTERM if n_sigterm else None)
            log["step"].append(done)
            log["lr"].append(lr)
            log["train_loss"].append(train_loss)
            if done % cfg.eval_interval == 0 or done == cfg.max_steps:
                log["val_step"].append(done)
                log["val_loss"].append(evaluate(model, s.val_tokens, cfg, done, world=world, device=device))
                if bar is not None:
                    bar.set_postfix(train=f"{train_loss:.3f}", val=f"{log['val_loss'][-1]:.3f}")
            clock["seconds"] = s.seconds_before + time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
            if (cfg.checkpoint_interval and done % cfg.checkpoint_interval == 0) or signum or done == stop_after:
                world.on_main(lambda: write_checkpoint(done), f"writing the checkpoint of step {done}")
                last_saved = done
            if signum:
                if bar is not None:
                    bar.close()
                raise TrainingInterrupted(done, signum, out / "checkpoint.pt" if out is not None else None,
                                          world.rank, world.size)
            if done == stop_after:
                break
        if bar is not None:
            bar.close()
        final_step = log["step"][-1] if log["step"] else start_step
        if final_step != last_saved or (out is not None and not (out / "checkpoint.pt").exists()):
            world.on_main(lambda: write_checkpoint(final_step), f"writing the checkpoint of step {final_step}")
    seconds = clock["seconds"]
    total_tokens = tokens_before + tokens_seen
    result = {
        "model": model,
        "tokenizer": s.tokenizer,
        "corpus": s.corpus,
        "train_tokens": s.train_tokens,
        "val_tokens": s.val_tokens,
        "log": log,
        "seconds": seconds,
        "tokens_per_second": total_tokens / seconds if seconds > 0 else float("nan"),
        "parameters": count_parameters(model),
        "final_val_loss": log["val_loss"][-1] if log["val_loss"] else float("nan"),
        "steps": final_step,
        "rank": world.rank,
        "world_size": world.size,
    }
    if out is not None and final_step >= cfg.max_steps:
        summary = {k: result[k] for k in ("seconds", "tokens_per_second", "parameters", "final_val_loss", "steps")}
        summary["world_size"] = world.size
        text = json.dumps(_finite_or_none({**summary, "log": log, "train_config": cfg.to_dict()}), indent=1, allow_nan=False)
        world.on_main(lambda: atomic_write_bytes(out / "result.json", text.encode("utf-8")), "writing result.json")
    return result


def _write_log(out: Path, log: dict) -> None:
    val = dict(zip(log["val_step"], log["val_loss"]))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["step", "lr", "train_loss", "val_loss"])
    for s, lr, tl in zip(log["step"], log["lr"], log["train_loss"]):
        writer.writerow([s, f"{lr:.6g}", f"{tl:.6f}", f"{val[s]:.6f}" if s in val else ""])
    atomic_write_bytes(out / "log.csv", buffer.getvalue().encode("utf-8"))


def _cache_dir_for(cfg: TrainConfig) -> Path:
    key = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode() + library_hash().encode()).hexdigest()[:16]
    return default_cache_dir() / f"run-{key}"


def _load_cached_run(cfg: TrainConfig, out: Path) -> dict:
    """A finished run from the cache, checked end to end; any problem raises."""
    saved = json.loads((out / "result.json").read_text(encoding="utf-8"))
    if not isinstance(saved, dict) or saved.get("train_config") != cfg.to_dict():
        raise ValueError("result.json does not describe this TrainConfig")
    for key in ("seconds", "parameters", "log"):
        if key not in saved:
            raise ValueError(f"result.json has no {key!r}")
    payload = load_checkpoint(out / "checkpoint.pt")  # checksum verified
    extra = payload["extra"]
    if payload["iteration"] != cfg.max_steps or extra.get("train_config") != cfg.to_dict():
        raise ValueError(f"checkpoint.pt holds step {payload['iteration']} of a different or unfinished run")
    if (out / "tokenizer.json").read_text(encoding="utf-8") != extra.get("tokenizer"):
        raise ValueError("tokenizer.json differs from the tokenizer saved in checkpoint.pt")
    corpus, tokenizer, train_tokens, val_tokens = prepare_data(cfg, load_tokenizer(out / "tokenizer.json"))
    if corpus.sha256 != extra.get("corpus_sha256"):
        raise ValueError("the corpus changed since this run was trained")
    model = TransformerLM(TransformerConfig.from_dict(payload["config"]))
    restore_checkpoint(payload, model, name=str(out / "checkpoint.pt"))
    model.eval()
    log = {k: _none_to_nan(v) if k in ("train_loss", "val_loss") else v for k, v in extra["log"].items()}
    return {
        "model": model,
        "tokenizer": tokenizer,
        "corpus": corpus,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "log": log,
        "seconds": saved["seconds"],
        "tokens_per_second": float("nan") if saved.get("tokens_per_second") is None else saved["tokens_per_second"],
        "parameters": saved["parameters"],
        "final_val_loss": log["val_loss"][-1] if log["val_loss"] else float("nan"),
        "steps": payload["iteration"],
    }


def is_cached(cfg: TrainConfig) -> bool:
    """True when :func:`load_or_train` would load ``cfg``'s finished run from the cache."""
    return (_cache_dir_for(cfg) / "result.json").exists()


def load_or_train(cfg: TrainConfig, progress: bool = True) -> dict:
    """The book's trained model: loaded from the cache if this exact config and package
    version were trained before, trained (deterministically) otherwise.

    The cache heals: an interrupted entry is resumed, and a damaged one (unreadable
    result.json, corrupt checkpoint, replaced tokenizer, changed corpus) is reported with
    a RuntimeWarning naming its folder and trained again, never trusted.
    """
    cfg.validate()
    out = _cache_dir_for(cfg)
    if (out / "result.json").exists():
        try:
            return _load_cached_run(cfg, out)
        except Exception as exc:  # anything wrong with a cache entry means: do not trust it
            warnings.warn(f"the cached run in {out} is damaged ({type(exc).__name__}: {exc}); training it again",
                          RuntimeWarning, stacklevel=2)
    elif (out / "checkpoint.pt").exists():
        try:
            result = train(cfg, out_dir=out, resume=True, progress=progress)
            result["model"].eval()
            return result
        except (ValueError, CheckpointError, OSError, KeyError) as exc:
            warnings.warn(f"the interrupted run in {out} cannot be resumed ({type(exc).__name__}: {exc}); "
                          f"training it again", RuntimeWarning, stacklevel=2)
    result = train(cfg, out_dir=out, progress=progress, overwrite=True)
    result["model"].eval()
    return result


# ------------------------------------------------------------------ command line
SMOKE_FACTOR = 64


def smoke_scaled(values: dict) -> dict:
    """``TINYFORMER_SMOKE=1``: the same command, scaled down to seconds (used by the tests
    that run every documented command). Step counts are divided by 64 (rounded up; warmup
    rounded down, so warmup <= max_steps still holds), evaluation uses at most 2 batches of
    at most 4 windows, accumulation at most 2 micro-batches (so 4 windows still split over 2
    processes), and BPE vocabularies are capped at 300. Only the keys present are
    scaled, so a value read back from a checkpoint is never scaled twice."""
    scaled = dict(values)
    for key in ("max_steps", "eval_interval"):
        if key in scaled and isinstance(scaled[key], int) and not isinstance(scaled[key], bool):
            scaled[key] = max(1, math.ceil(scaled[key] / SMOKE_FACTOR))
    if isinstance(scaled.get("checkpoint_interval"), int) and scaled["checkpoint_interval"] > 0:
        scaled["checkpoint_interval"] = math.ceil(scaled["checkpoint_interval"] / SMOKE_FACTOR)
    if isinstance(scaled.get("warmup_steps"), int):
        scaled["warmup_steps"] = scaled["warmup_steps"] // SMOKE_FACTOR
    for key, cap in (("eval_batches", 2), ("batch_size", 4), ("grad_accum_steps", 2), ("bpe_vocab_size", 300)):
        if isinstance(scaled.get(key), int) and not isinstance(scaled[key], bool):
            scaled[key] = min(scaled[key], cap)
    return scaled


_FLAG_HELP = {
    "batch_size": "the global batch: windows per optimiser step over all processes and accumulation steps "
                  "(each process runs BATCH_SIZE / (processes x GRAD_ACCUM_STEPS) at a time)",
    "grad_accum_steps": "split each process's share of a step's batch into this many micro-batches, run one "
                        "after the other with their gradients added up (the same update, less activation memory)",
    "dist_timeout": "seconds a process waits for the others under torchrun before it stops with an error "
                    "(default 600)",
    "device": "cpu, cuda or mps; under torchrun, cuda gives each process the GPU of its LOCAL_RANK",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinyformer.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with TrainConfig fields (flags below override it); "
                                         "configs/book.json is the book's run")
    parser.add_argument("--out", default="runs/default", help="output folder (log.csv, checkpoint.pt, ...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT (its saved config, with any flags given here applied)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration and OUT, print them, and exit without training")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also TINYFORMER_DEBUG=1)")
    parser.add_argument("--betas", type=float, nargs=2, metavar=("BETA1", "BETA2"), default=None)
    for name, fld in TrainConfig.__dataclass_fields__.items():
        if name in ("model_overrides", "betas"):
            continue
        flag = "--" + name.replace("_", "-")
        if fld.type in ("bool", bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=_FLAG_HELP.get(name))
        else:
            kind = {"int": int, "float": float}.get(str(fld.type), str)
            parser.add_argument(flag, dest=name, type=kind, default=None, help=_FLAG_HELP.get(name))
    return parser


def _read_config_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no config file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of TrainConfig fields, got {type(data).__name__}")
    return data


def _config_from_args(args) -> TrainConfig:
    smoke = os.environ.get("TINYFORMER_SMOKE", "") not in ("", "0")
    flags = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__ if getattr(args, name, None) is not None}
    if args.config:
        base = _read_config_file(args.config)
    elif args.resume and (Path(args.out) / "checkpoint.pt").is_file():
        # Resume without --config: the run's own config, so `--max-steps 640 --resume` just works.
        base = load_checkpoint(Path(args.out) / "checkpoint.pt")["extra"].get("train_config")
        if not isinstance(base, dict):
            raise ResumeError(f"{Path(args.out) / 'checkpoint.pt'} was not written by tinyformer.train (no train_config)")
    else:
        base = TrainConfig().to_dict()
    if smoke:
        if not (args.resume and not args.config):
            base = smoke_scaled(base)
        flags = smoke_scaled(flags)
        print(f"TINYFORMER_SMOKE: steps divided by {SMOKE_FACTOR}, evaluation and batches capped (a smoke test, "
              f"not a real run)", file=sys.stderr)
    return TrainConfig.from_dict({**base, **flags})


def _run_cli(args) -> int:
    cfg = _config_from_args(args)
    out = Path(args.out)
    if args.check_config:
        _prepare_out_dir(out, args.resume, args.overwrite)
        model_config = preset(cfg.preset, **cfg.model_overrides)
        print(json.dumps(cfg.to_dict(), indent=1))
        note = ""
        try:
            _check_device(cfg.device)
        except ConfigError as exc:
            note = f" (note: {exc})"
        print(f"config OK: {cfg.preset} model (vocab_size set by the tokenizer), {cfg.max_steps} steps, "
              f"outputs to {out}{note}")
        return 0
    result = train(cfg, out_dir=out, resume=args.resume, overwrite=args.overwrite)
    if result["rank"] != 0:
        return 0  # rank 0 reports for all
    processes = f", {result['world_size']} processes" if result["world_size"] > 1 else ""
    print(
        f"done: {result['parameters']:,} parameters, {result['steps']} steps, final val loss "
        f"{result['final_val_loss']:.4f} ({result['seconds']:.1f} s, {result['tokens_per_second']:,.0f} tokens/s"
        f"{processes}); "
        f"outputs in {out}"
    )
    return 0


def main(argv=None) -> int:
    """The command line. Returns the exit status: 0 done, 2 bad input (one ``error:`` line,
    no traceback unless ``--debug`` or TINYFORMER_DEBUG=1), 1 when the processes of a
    distributed run cannot meet or one of them died or hung (one ``error:`` line naming the
    rank and what failed), 128 + signal number when SIGINT or SIGTERM stopped training (after
    saving a checkpoint)."""
    args = _parser().parse_args(argv)  # argparse itself exits 2 with an `error:` line
    debug = args.debug or os.environ.get("TINYFORMER_DEBUG", "") not in ("", "0")
    try:
        return _run_cli(args)
    except TrainingInterrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the checkpoint is saved: a late second Ctrl-C changes nothing
        if exc.rank == 0:  # every rank stopped after the same step; one report
            again = ("python -m tinyformer.train" if exc.world_size == 1 else
                     f"torchrun ... -m tinyformer.train (on {exc.world_size} or any number of processes)")
            print(f"interrupted: {exc}; continue with: {again} --out {args.out} --resume", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"interrupted{detail}; the last checkpoint in {args.out} (if any) is intact", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, CheckpointError, DistributedError) as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1 if isinstance(exc, DistributedError) else 2


if __name__ == "__main__":
    sys.exit(main())
