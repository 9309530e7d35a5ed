"""Train a TransformerLM on a text: ``python -m tinyformer.train --help``.

The loop: sample random windows, cross-entropy of next-token predictions, AdamW
with warmup + cosine learning rate and global-norm clipping; evaluate on held-out
text every ``eval_interval`` steps; write a CSV log and atomic checkpoints.
Resuming from a checkpoint restores the model, the optimiser and the batch
sampler's random state, so the run continues the same loss trajectory.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._hash import library_hash, package_hash
from .data import Corpus, default_cache_dir, load_kjv, load_text_file, train_val_split
from .model import TransformerConfig, TransformerLM, count_parameters, preset
from .tokenizer import BPETokenizer, CharTokenizer, load_tokenizer
from .training import (
    AdamW,
    clip_grad_norm,
    cosine_lr_schedule,
    cross_entropy,
    get_batch,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
)

__all__ = ["BOOK_RUN", "SEED003_GPU_RUN", "TrainConfig", "train", "ngram_baselines", "load_or_train", "package_hash", "prepare_data", "main"]


@dataclass
class TrainConfig:
    """Everything that determines a training run (and so its cache key)."""

    preset: str = "book-small"
    model_overrides: dict = field(default_factory=dict)
    corpus: str = "kjv"  # "kjv" or a path to a UTF-8 text file
    tokenizer: str = "char"  # "char" or "bpe"
    bpe_vocab_size: int = 1024
    val_fraction: float = 0.1
    batch_size: int = 32
    max_steps: int = 500
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_interval: int = 50
    eval_batches: int = 16
    checkpoint_interval: int = 0  # 0: only at the end
    seed: int = 1337
    device: str = "cpu"
    dtype: str = "float32"  # "bfloat16" uses autocast on CUDA
    compile: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


# The run the book trains at build time (about a minute on 2 CPU cores): character-level
# KJV, the modern book-small decoder. The training, sampling and inside-the-model
# chapters all use this one definition.
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


def load_corpus(spec: str) -> Corpus:
    return load_kjv() if spec == "kjv" else load_text_file(spec)


def _make_tokenizer(cfg: TrainConfig, text: str):
    if cfg.tokenizer == "char":
        return CharTokenizer.from_text(text)
    if cfg.tokenizer == "bpe":
        return BPETokenizer.train(text, cfg.bpe_vocab_size)
    raise ValueError(f"unknown tokenizer {cfg.tokenizer!r}: expected 'char' or 'bpe'")


def prepare_data(cfg: TrainConfig, tokenizer=None):
    """Corpus -> tokenizer -> (train tokens, val tokens), all deterministic.

    Pass ``tokenizer`` to reuse one already trained for this config instead of training it again.
    """
    corpus = load_corpus(cfg.corpus)
    if tokenizer is None:
        tokenizer = _make_tokenizer(cfg, corpus.text)
    tokens = np.asarray(tokenizer.encode(corpus.text), dtype=np.int32)
    train_tokens, val_tokens = train_val_split(tokens, cfg.val_fraction)
    return corpus, tokenizer, train_tokens, val_tokens


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
def evaluate(model, tokens, cfg: TrainConfig, step: int) -> float:
    """Mean loss on ``eval_batches`` windows drawn by a generator seeded from the step,
    so evaluation never disturbs (or depends on) the training sampler."""
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 1_000_003 + step)
    losses = []
    for _ in range(cfg.eval_batches):
        x, y = get_batch(tokens, cfg.batch_size, model.config.context_length, cfg.device, generator=g)
        losses.append(cross_entropy(model(x).float(), y).item())
    model.train()
    return float(np.mean(losses))


def _autocast(cfg: TrainConfig):
    if cfg.dtype == "bfloat16":
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
    if cfg.dtype != "float32":
        raise ValueError(f"unknown dtype {cfg.dtype!r}: expected 'float32' or 'bfloat16'")
    return torch.autocast(device_type="cpu", enabled=False)


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    data=None,
    stop_after: int | None = None,
) -> dict:
    """Run (or resume) training. Returns a dict with the model, tokenizer, log and losses.

    ``out_dir`` receives ``log.csv``, ``checkpoint.pt``, ``tokenizer.json`` and
    ``result.json``. ``stop_after`` ends the run early at that step (as if
    interrupted) after writing a checkpoint: used to test resuming.
    """
    out = Path(out_dir) if out_dir is not None else None
    corpus, tokenizer, train_tokens, val_tokens = data or prepare_data(cfg)
    model_config = preset(cfg.preset, **{**cfg.model_overrides, "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(cfg.seed)
    model = TransformerLM(model_config).to(cfg.device)
    # No weight decay on norm gains and biases (training.param_groups); our own AdamW.
    optimizer = make_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sampler = torch.Generator().manual_seed(cfg.seed)
    log = {"step": [], "lr": [], "train_loss": [], "val_step": [], "val_loss": []}
    start_step = 0

    if resume:
        if out is None or not (out / "checkpoint.pt").exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint.pt in {out}")
        payload = load_checkpoint(out / "checkpoint.pt", model, optimizer)
        if payload["extra"].get("train_config") != cfg.to_dict():
            raise ValueError("the checkpoint was written by a different TrainConfig; refusing to mix runs")
        start_step = payload["iteration"]
        sampler.set_state(payload["extra"]["sampler_state"])
        log = payload["extra"]["log"]

    def write_checkpoint(step: int) -> None:
        if out is not None:
            save_checkpoint(
                out / "checkpoint.pt",
                model,
                optimizer,
                step,
                config=model_config.to_dict(),
                extra={"train_config": cfg.to_dict(), "sampler_state": sampler.get_state(), "log": log},
            )

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out / "tokenizer.json")
    step_fn = torch.compile(model) if cfg.compile else model
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start_step, desc="training", unit="step")
    t0 = time.perf_counter()
    tokens_seen = 0
    model.train()
    for step in range(start_step, cfg.max_steps):
        lr = cosine_lr_schedule(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(train_tokens, cfg.batch_size, model_config.context_length, cfg.device, generator=sampler)
        with _autocast(cfg):
            loss = cross_entropy(step_fn(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.parameters(), cfg.grad_clip)
        optimizer.step()
        tokens_seen += x.numel()
        log["step"].append(step + 1)
        log["lr"].append(lr)
        log["train_loss"].append(loss.item())
        done = step + 1
        if done % cfg.eval_interval == 0 or done == cfg.max_steps:
            log["val_step"].append(done)
            log["val_loss"].append(evaluate(model, val_tokens, cfg, done))
            if bar is not None:
                bar.set_postfix(train=f"{loss.item():.3f}", val=f"{log['val_loss'][-1]:.3f}")
        if bar is not None:
            bar.update(1)
        if cfg.checkpoint_interval and done % cfg.checkpoint_interval == 0:
            write_checkpoint(done)
        if stop_after is not None and done >= stop_after:
            write_checkpoint(done)
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    final_step = log["step"][-1] if log["step"] else start_step
    if stop_after is None or final_step >= cfg.max_steps:
        write_checkpoint(final_step)
    result = {
        "model": model,
        "tokenizer": tokenizer,
        "corpus": corpus,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "log": log,
        "seconds": seconds,
        "tokens_per_second": tokens_seen / seconds if seconds > 0 else float("nan"),
        "parameters": count_parameters(model),
        "final_val_loss": log["val_loss"][-1] if log["val_loss"] else float("nan"),
    }
    if out is not None:
        _write_log(out, log)
        summary = {k: result[k] for k in ("seconds", "tokens_per_second", "parameters", "final_val_loss")}
        (out / "result.json").write_text(json.dumps({**summary, "log": log, "train_config": cfg.to_dict()}, indent=1))
    return result


def _write_log(out: Path, log: dict) -> None:
    val = dict(zip(log["val_step"], log["val_loss"]))
    tmp = out / ".log.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "lr", "train_loss", "val_loss"])
        for s, lr, tl in zip(log["step"], log["lr"], log["train_loss"]):
            writer.writerow([s, f"{lr:.6g}", f"{tl:.6f}", f"{val[s]:.6f}" if s in val else ""])
    os.replace(tmp, out / "log.csv")


def load_or_train(cfg: TrainConfig, progress: bool = True) -> dict:
    """The book's trained model: loaded from the cache if this exact config and package
    version were trained before, trained (deterministically) otherwise."""
    key = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode() + library_hash().encode()).hexdigest()[:16]
    out = default_cache_dir() / f"run-{key}"
    if (out / "result.json").exists() and (out / "checkpoint.pt").exists():
        corpus, tokenizer, train_tokens, val_tokens = prepare_data(cfg, load_tokenizer(out / "tokenizer.json"))
        payload = load_checkpoint(out / "checkpoint.pt")
        model = TransformerLM(TransformerConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["model"])  # same file, so the config always fits
        model.eval()
        saved = json.loads((out / "result.json").read_text())
        return {
            "model": model,
            "tokenizer": tokenizer,
            "corpus": corpus,
            "train_tokens": train_tokens,
            "val_tokens": val_tokens,
            "log": saved["log"],
            "seconds": saved["seconds"],
            "tokens_per_second": saved["tokens_per_second"],
            "parameters": saved["parameters"],
            "final_val_loss": saved["final_val_loss"],
        }
    result = train(cfg, out_dir=out, progress=progress)
    result["model"].eval()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinyformer.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with TrainConfig fields (flags below override it)")
    parser.add_argument("--out", default="runs/default", help="output folder (log.csv, checkpoint.pt, ...)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    for name, fld in TrainConfig.__dataclass_fields__.items():
        if name in ("model_overrides", "betas"):
            continue
        flag = "--" + name.replace("_", "-")
        if fld.type in ("bool", bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float}.get(str(fld.type), str)
            parser.add_argument(flag, dest=name, type=kind, default=None)
    args = parser.parse_args(argv)
    data = json.loads(Path(args.config).read_text()) if args.config else {}
    for name in TrainConfig.__dataclass_fields__:
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    cfg = TrainConfig.from_dict(data)
    result = train(cfg, out_dir=args.out, resume=args.resume)
    print(
        f"done: {result['parameters']:,} parameters, final val loss {result['final_val_loss']:.4f} "
        f"({result['seconds']:.1f} s, {result['tokens_per_second']:,.0f} tokens/s); outputs in {args.out}"
    )


if __name__ == "__main__":
    main()
