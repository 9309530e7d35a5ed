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

__all__ = ["prepare_data", "check_data_sizes", "Prepared", "prepare_run"]


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
    saved_tokenizer = tokenizer_from_json(extra["tokenizer"])
    check_saved_tokenizer(out, extra["tokenizer"])
    if data and tokenizer_json(data[1]) != extra["tokenizer"]:
        raise ResumeError(f"cannot resume {out}: the tokenizer passed in data differs from the one in checkpoint.pt")
    return data or prepare_data(cfg, tokenizer=saved_tokenizer, corpus=corpus)


def prepare_run(cfg: TrainConfig, device: str, out: Path | None, resume: bool, overwrite: bool, data,
                progress: bool) -> Prepared:
    """Check the output folder, the checkpoint to resume, the device and the data, and build the
    model, optimiser and sampler (restored on resume). Reads files, never writes one."""
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
