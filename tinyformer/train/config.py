"""What determines a training run: :class:`TrainConfig`, every field checked on construction.

A config is a plain dataclass of JSON-friendly fields (``tinyformer/configs/*.json`` hold the same fields);
it is saved in every checkpoint, compared on resume, and keyed into the book's run cache.

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data import file_kind
from ..model import PRESETS, TransformerConfig, preset

__all__ = ["TrainConfig", "ConfigError", "NAMED_CORPORA", "check_device", "default_warmup_steps", "SEED_LIMIT"]


class ConfigError(ValueError):
    """A configuration, a command-line value or an output folder that cannot be used."""



# Allowed ranges, checked on construction. ints: minimum value.
_INT_MINIMUM = {"bpe_vocab_size": 256, "batch_size": 1, "grad_accum_steps": 1, "max_steps": 1, "warmup_steps": 0,
                "eval_interval": 1, "eval_batches": 1, "checkpoint_interval": 0, "seed": 0}
# Seeds feed torch.manual_seed and torch.Generator.manual_seed (evaluation seeds its generator with
# seed + 1_000_003 + step): below 2**63 they stay inside the unsigned 64-bit range torch accepts.
SEED_LIMIT = 2**63
# The warmup of a config that does not set one: DEFAULT_WARMUP_STEPS, but never more than a tenth
# of the run, so a short run (--max-steps 20) needs no --warmup-steps to be valid.
DEFAULT_WARMUP_STEPS = 50
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
    # None (the default): min(DEFAULT_WARMUP_STEPS, max_steps // 10), resolved on construction.
    warmup_steps: int | None = None
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

        def fail(name: str, allowed: str, fix: str = ""):
            value = getattr(self, name)
            raise ConfigError(f"TrainConfig.{name} must be {allowed}, got {value!r} ({type(value).__name__}){fix}")

        if self.warmup_steps is None and isinstance(self.max_steps, int) and not isinstance(self.max_steps, bool):
            self.warmup_steps = default_warmup_steps(self.max_steps)
        for name, minimum in _INT_MINIMUM.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                fail(name, f"an integer >= {minimum}")
        if self.seed >= SEED_LIMIT:
            fail("seed", "an integer in [0, 2**63)", "; choose another --seed")
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
            fail("warmup_steps", f"<= max_steps ({self.max_steps})",
                 "; lower --warmup-steps (or leave it unset: it defaults to min(50, max_steps // 10))")
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
            if path.exists() and not path.is_file():
                fail("corpus", f"'kjv', 'tinyshakespeare' or the path of a UTF-8 text file (this is not a regular "
                               f"file but {file_kind(path)})")
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


def default_warmup_steps(max_steps: int) -> int:
    """The warmup of a run whose config does not set one: :data:`DEFAULT_WARMUP_STEPS`, at most a
    tenth of ``max_steps``."""
    return min(DEFAULT_WARMUP_STEPS, max_steps // 10)


def check_device(device: str) -> None:
    """Raise ConfigError unless ``device`` exists on this machine (checked when a run starts, not on
    construction: a GPU configuration can be written and checked on a laptop)."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available here: torch.cuda.is_available() is False "
                          f"(torch {torch.__version__}); use --device cpu")
    if kind == "cuda" and torch.device(device).index is not None and torch.device(device).index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} is not available here: torch.backends.mps.is_available() is False")
