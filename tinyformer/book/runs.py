"""The trained runs the book's chapters use, their cache, and a command that prepares them.

    python -m tinyformer.book.runs          # train every run that is not cached yet

Three models are trained for the book, each once per version of the library, and cached
(:func:`load_or_train`): the book's run (:data:`BOOK_RUN`, book-small, read from
``tinyformer/configs/book.json``, the file ``python -m tinyformer.train --config`` trains) and,
for the training chapter's comparison, the original-architecture toy and the same toy shape with
the modern choices, on exactly the book's data, steps and schedule.

The cache key is the run's config plus a hash of the library (``tinyformer/`` without the book's
kit, the exercises and the configs: :func:`tinyformer.files.library_hash`), so editing anything
here, in a chapter's kit or in an exercise never retrains a model; editing the model, the loop or
the data does.

The book build runs this command before it executes any chapter that uses them, so training
shows its own progress in the build log (a fresh clone has nothing cached) and a chapter's
execution time is the chapter's own work.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from ..checkpoints import CheckpointError, load_checkpoint, restore_checkpoint
from ..data import default_cache_dir
from ..files import PACKAGE, library_hash, sha256_bytes
from ..model import TransformerConfig, TransformerLM, preset
from ..tokenizer import load_tokenizer
from ..train import RunResult, TrainConfig, prepare_data, train
from ..train.run_folder import none_to_nan

__all__ = ["BOOK_RUN", "BOOK_RUNS", "ORIGINAL_TOY", "MODERN_TOY", "RUN_CHAPTERS", "cache_key", "cache_dir_for",
           "is_cached", "load_or_train", "missing_runs", "prepare_runs", "smoke_scaled", "main"]

BOOK_CONFIG = PACKAGE / "configs" / "book.json"
# The run the book trains at build time (about a minute on 2 CPU cores): character-level KJV, the
# modern book-small decoder. The training, sampling and inside-the-model chapters all use it.
BOOK_RUN = TrainConfig.from_dict(json.loads(BOOK_CONFIG.read_text(encoding="utf-8")))

_T = preset(BOOK_RUN.preset).context_length
# The original Transformer's choices as a toy: post-norm LayerNorm, sinusoidal positions, a ReLU
# feed-forward, biases (all from the preset); only the window is the book's.
ORIGINAL_TOY = replace(BOOK_RUN, preset="original-toy", model_overrides={"context_length": _T})
# The same toy shape with book-small's modern choices: separates "which architecture" from "how big".
MODERN_TOY = replace(BOOK_RUN, preset="original-toy", model_overrides={
    "context_length": _T, "positions": "rope", "norm": "rms", "norm_position": "pre", "ffn": "swiglu",
    "bias": False, "d_ff": None})

BOOK_RUNS: dict[str, TrainConfig] = {"book-small": BOOK_RUN, "original toy": ORIGINAL_TOY, "modern toy": MODERN_TOY}
# The chapters that load them (by file name): the build prepares the runs before reading these.
RUN_CHAPTERS = ("inside", "sampling", "training")


# ------------------------------------------------------------------ the cache
def cache_key(cfg: TrainConfig, package: Path = PACKAGE) -> str:
    """16 hex digits: the run's config and the library it was trained with (never the book's kit)."""
    return sha256_bytes(json.dumps(cfg.to_dict(), sort_keys=True).encode() + library_hash(package).encode())[:16]


def cache_dir_for(cfg: TrainConfig) -> Path:
    """The run folder of ``cfg`` in the cache (``$TINYFORMER_CACHE``, else ``~/.cache/tinyformer``)."""
    return default_cache_dir() / f"run-{cache_key(cfg)}"


def _load_cached_run(cfg: TrainConfig, out: Path) -> RunResult:
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
    log = {k: none_to_nan(v) if k in ("train_loss", "val_loss") else v for k, v in extra["log"].items()}
    return RunResult(
        model=model, tokenizer=tokenizer, corpus=corpus, train_tokens=train_tokens, val_tokens=val_tokens, log=log,
        config=cfg, steps=payload["iteration"], seconds=saved["seconds"],
        tokens_per_second=float("nan") if saved.get("tokens_per_second") is None else saved["tokens_per_second"],
        parameters=saved["parameters"],
    )


def is_cached(cfg: TrainConfig) -> bool:
    """True when :func:`load_or_train` would load ``cfg``'s finished run from the cache."""
    return (cache_dir_for(cfg) / "result.json").exists()


def load_or_train(cfg: TrainConfig, progress: bool = True) -> RunResult:
    """The book's trained model: loaded from the cache if this exact config and library were
    trained before, trained (deterministically) otherwise.

    The cache heals: an interrupted entry is resumed, and a damaged one (unreadable
    result.json, corrupt checkpoint, replaced tokenizer, changed corpus) is reported with
    a RuntimeWarning naming its folder and trained again, never trusted.
    """
    cfg.validate()
    out = cache_dir_for(cfg)
    if (out / "result.json").exists():
        try:
            return _load_cached_run(cfg, out)
        except Exception as exc:  # anything wrong with a cache entry means: do not trust it
            warnings.warn(f"the cached run in {out} is damaged ({type(exc).__name__}: {exc}); training it again",
                          RuntimeWarning, stacklevel=2)
    elif (out / "checkpoint.pt").exists():
        try:
            result = train(cfg, out_dir=out, resume=True, progress=progress)
            result.model.eval()
            return result
        except (ValueError, CheckpointError, OSError, KeyError) as exc:
            warnings.warn(f"the interrupted run in {out} cannot be resumed ({type(exc).__name__}: {exc}); "
                          f"training it again", RuntimeWarning, stacklevel=2)
    result = train(cfg, out_dir=out, progress=progress, overwrite=True)
    result.model.eval()
    return result


# ------------------------------------------------------------------ preparing the runs
def missing_runs(runs: dict[str, TrainConfig] | None = None) -> list[str]:
    """Names of the runs (default: :data:`BOOK_RUNS`) not in the cache yet."""
    runs = BOOK_RUNS if runs is None else runs
    return [name for name, cfg in runs.items() if not is_cached(cfg)]


def prepare_runs(progress: bool = True, runs: dict[str, TrainConfig] | None = None) -> list[str]:
    """Train every run (default: :data:`BOOK_RUNS`) not cached yet, in order; returns their names."""
    runs = BOOK_RUNS if runs is None else runs
    missing = missing_runs(runs)
    for i, name in enumerate(missing, 1):
        cfg = runs[name]
        print(f"[{i}/{len(missing)}] training the book's run {name!r} ({cfg.preset}, {cfg.max_steps} steps); "
              f"cached afterwards", file=sys.stderr, flush=True)
        load_or_train(cfg, progress=progress)
    return missing


SMOKE_FACTOR = 64


def smoke_scaled(values: dict) -> dict:
    """A run's TrainConfig fields (or some of them) scaled down to seconds: the tests run every
    documented training command this way (``--smoke`` here). Step counts are divided by 64
    (rounded up; warmup rounded down, so warmup <= max_steps still holds), evaluation uses at most
    2 batches of at most 4 windows, accumulation at most 2 micro-batches (so 4 windows still split
    over 2 processes), and BPE vocabularies are capped at 300. Only the keys present are scaled, so
    a value read back from a checkpoint is never scaled twice."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyformer.book.runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="train each run scaled down to seconds (smoke_scaled: a test of this command, "
                             "not the book's runs)")
    args = parser.parse_args(argv)
    runs = BOOK_RUNS
    if args.smoke:
        runs = {name: TrainConfig.from_dict(smoke_scaled(cfg.to_dict())) for name, cfg in runs.items()}
    trained = prepare_runs(runs=runs)
    print(f"book runs ready ({len(trained)} trained, {len(runs) - len(trained)} already cached)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
