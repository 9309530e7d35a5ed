"""Everything a run needs before its first step: data, model, optimiser and sampler, all checked.

:func:`prepare_data` turns a config into tokens (corpus -> tokenizer -> train/val split);
:func:`prepare_run` checks the output folder, the checkpoint to resume, the device and the data
sizes, and builds the model, optimiser and batch sampler (restored from the checkpoint on resume).
Nothing here writes a file: a run that cannot start leaves its folder as it was.

Taught in: Training (book/training.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import restore_checkpoint
from ..data import Corpus, load_corpus, train_val_split
from ..model import TransformerConfig, TransformerLM, preset
from ..optim import make_optimizer
from ..tokenizer import BPETokenizer, CharTokenizer
from .config import ConfigError, TrainConfig, check_device
from .run_folder import (
    ResumeError,
    check_resumable,
    check_saved_tokenizer,
    prepare_out_dir,
    read_checkpoint_to_resume,
    tokenizer_from_json,
    tokenizer_json,
)

__all__ = ["prepare_data", "check_data_sizes", "Prepared", "prepare_run", "batch_memory_lower_bound",
           "available_memory", "check_batch_memory"]


def _make_tokenizer(cfg: TrainConfig, text: str, progress: bool = False):
    if cfg.tokenizer == "char":
        return CharTokenizer.from_text(text)
    if cfg.tokenizer == "bpe":
        return BPETokenizer.train(text, cfg.bpe_vocab_size, progress=progress)
    raise ConfigError(f"unknown tokenizer {cfg.tokenizer!r}: expected 'char' or 'bpe'")


def prepare_data(cfg: TrainConfig, tokenizer=None, progress: bool = False, corpus: Corpus | None = None):
    """Corpus -> tokenizer -> (train tokens, val tokens), all deterministic.

    Returns ``(corpus, tokenizer, train_tokens, val_tokens)``. Pass ``tokenizer`` to reuse one
    already trained for this config instead of training it again (and ``corpus`` to reuse a
    loaded corpus).
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


def batch_memory_lower_bound(cfg: TrainConfig, model_config: TransformerConfig, processes: int = 1) -> dict:
    """Bytes one process needs at the least for one step's batch, by where they live: ``"host"``
    (the global batch's window starts, int64, drawn whole on every process) and ``"device"`` (one
    micro-batch of B = batch_size / (processes x grad_accum_steps) windows of T tokens: the int64
    inputs and targets, the float32 logits B x T x V that the loss reads, and one B x T x D
    activation per layer kept for the backward pass, in the autocast dtype).

    A lower bound on purpose (no attention scores, no MLP hidden, no gradients of activations,
    no weights): a batch is refused only when even this cannot fit, so no run that fits is refused."""
    micro = cfg.batch_size // (processes * cfg.grad_accum_steps)
    tokens = micro * model_config.context_length
    act_bytes = 2 if cfg.dtype == "bfloat16" else 4
    device = tokens * (2 * 8 + 4 * model_config.vocab_size + act_bytes * model_config.d_model * model_config.n_layers)
    return {"host": 8 * cfg.batch_size, "device": device}


def available_memory(device: str) -> dict:
    """Bytes free now: ``"host"`` from /proc/meminfo's MemAvailable and ``"device"`` from
    torch.cuda.mem_get_info on CUDA (the host's on CPU); None where it cannot be read (other
    systems, MPS), and then nothing is refused."""
    host = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        host = None
    kind = torch.device(device).type
    if kind == "cpu":
        return {"host": host, "device": host}
    if kind == "cuda":
        try:
            return {"host": host, "device": torch.cuda.mem_get_info(torch.device(device))[0]}
        except (RuntimeError, AssertionError):
            return {"host": host, "device": None}
    return {"host": host, "device": None}


def check_batch_memory(cfg: TrainConfig, model_config: TransformerConfig, device: str, processes: int = 1) -> None:
    """Refuse, before the first step, a batch that clearly cannot fit (a typo such as
    ``--batch-size 1000000000`` would otherwise grow memory until the system kills the run)."""
    need, free = batch_memory_lower_bound(cfg, model_config, processes), available_memory(device)
    if torch.device(device).type == "cpu" and free["host"] is not None:
        need, free = {"host": need["host"] + need["device"]}, {"host": free["host"]}
    for where in need:
        if free.get(where) is not None and need[where] > free[where]:
            gib = 2**30
            place = "this machine's memory" if where == "host" else f"the memory of {device}"
            raise ConfigError(
                f"--batch-size {cfg.batch_size} cannot fit: one step needs at least {need[where] / gib:,.1f} GiB "
                f"(window starts, inputs, logits and activations of {cfg.batch_size} windows of "
                f"{model_config.context_length} tokens over {processes} process(es) x {cfg.grad_accum_steps} "
                f"micro-batch(es)), and {place} has {free[where] / gib:,.1f} GiB available: use a smaller "
                f"--batch-size, or split each step into micro-batches with --grad-accum-steps")


@dataclass
class Prepared:
    """Everything a run needs before its first step, built and checked without writing a file."""

    corpus: Corpus
    tokenizer: object
    tokenizer_text: str  # tokenizer.json's content, saved in every checkpoint
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    model_config: TransformerConfig
    model: TransformerLM
    optimizer: torch.optim.Optimizer
    sampler: torch.Generator  # the stream of global batches, drawn alike on every rank
    log: dict
    start_step: int
    seconds_before: float  # training time of earlier sessions of this run
    tokens_before: int  # tokens trained on by earlier sessions


def _resumed_data(cfg: TrainConfig, out: Path, saved: dict, data):
    """On resume, the data of the saved tokenizer, checked against the corpus by its hash."""
    extra = saved["extra"]
    corpus = data[0] if data else load_corpus(cfg.corpus)
    check_resumable(extra["train_config"], cfg, extra.get("corpus_sha256"), corpus, out)
    saved_tokenizer = tokenizer_from_json(extra["tokenizer"], str(out / "checkpoint.pt"))
    check_saved_tokenizer(out, extra["tokenizer"])
    if data and tokenizer_json(data[1]) != extra["tokenizer"]:
        raise ResumeError(f"cannot resume {out}: the tokenizer passed in data differs from the one in checkpoint.pt")
    return data or prepare_data(cfg, tokenizer=saved_tokenizer, corpus=corpus)


def prepare_run(cfg: TrainConfig, device: str, out: Path | None, resume: bool, overwrite: bool, data,
                progress: bool, processes: int = 1) -> Prepared:
    """Check the output folder, the checkpoint to resume, the device, the data and the batch's
    memory, and build the model, optimiser and sampler (restored on resume). Reads files, never
    writes one."""
    saved = None
    if out is not None:
        prepare_out_dir(out, resume, overwrite)
        if resume:
            saved = read_checkpoint_to_resume(out, cfg)
    check_device(device)
    if saved is not None:
        data = _resumed_data(cfg, out, saved, data)
    corpus, tokenizer, train_tokens, val_tokens = data or prepare_data(cfg, progress=progress)
    model_config = preset(cfg.preset, **{**cfg.model_overrides, "vocab_size": tokenizer.vocab_size})
    check_data_sizes(cfg, model_config.context_length, train_tokens, val_tokens)
    check_batch_memory(cfg, model_config, device, processes)

    torch.manual_seed(cfg.seed)  # every rank builds the same initial weights (DDP broadcasts rank 0's anyway)
    model = TransformerLM(model_config).to(device)
    # No weight decay on norm gains and biases (optim.param_groups); our own AdamW.
    optimizer = make_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sampler = torch.Generator().manual_seed(cfg.seed)
    prepared = Prepared(corpus, tokenizer, tokenizer_json(tokenizer), train_tokens, val_tokens, model_config, model,
                        optimizer, sampler, log={"step": [], "lr": [], "train_loss": [], "val_step": [], "val_loss": []},
                        start_step=0, seconds_before=0.0, tokens_before=0)
    if saved is not None:
        restore_checkpoint(saved, model, optimizer, str(out / "checkpoint.pt"))  # checks the model config too
        sampler.set_state(saved["extra"]["sampler_state"])
        prepared.start_step = saved["iteration"]
        prepared.log = saved["extra"]["log"]
        prepared.seconds_before = float(saved["extra"].get("seconds", 0.0))
        prepared.tokens_before = int(saved["extra"].get("tokens_seen", 0))
    return prepared
