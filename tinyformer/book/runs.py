"""The trained runs the book's chapters use, defined once, and a command that prepares them.

    python -m tinyformer.book.runs          # train every run that is not cached yet

Three models are trained for the book, each once per version of the package, and cached
(``tinyformer.train.load_or_train``): the book's run (``BOOK_RUN``, book-small) and, for the
training chapter's comparison, seed 003's original-architecture toy and the same toy shape
with the modern choices, on exactly the book's data, steps and schedule.

The book build runs this command before it executes any chapter that uses them, so training
shows its own progress in the build log (a fresh clone has nothing cached) and a chapter's
execution time is the chapter's own work.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from ..model import preset
from ..train import BOOK_RUN, TrainConfig, is_cached, load_or_train, smoke_scaled

__all__ = ["BOOK_RUNS", "ORIGINAL_TOY", "MODERN_TOY", "RUN_CHAPTERS", "missing_runs", "prepare_runs"]

_T = preset(BOOK_RUN.preset).context_length
# Seed 003's toy as the original Transformer built it: post-norm LayerNorm, sinusoidal positions,
# a ReLU feed-forward, biases (all from the preset); only the window is the book's.
ORIGINAL_TOY = replace(BOOK_RUN, preset="seed003-toy", model_overrides={"context_length": _T})
# The same toy shape with book-small's modern choices: separates "which architecture" from "how big".
MODERN_TOY = replace(BOOK_RUN, preset="seed003-toy", model_overrides={
    "context_length": _T, "positions": "rope", "norm": "rms", "norm_position": "pre", "ffn": "swiglu",
    "bias": False, "d_ff": None})

BOOK_RUNS: dict[str, TrainConfig] = {"book-small": BOOK_RUN, "original toy": ORIGINAL_TOY, "modern toy": MODERN_TOY}
# The chapters that load them (by file name): the build prepares the runs before reading these.
RUN_CHAPTERS = ("inside", "sampling", "training")


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


def main() -> int:
    runs = BOOK_RUNS
    if os.environ.get("TINYFORMER_SMOKE", "") not in ("", "0"):  # the same command in seconds (tests)
        runs = {name: TrainConfig.from_dict(smoke_scaled(cfg.to_dict())) for name, cfg in runs.items()}
    trained = prepare_runs(runs=runs)
    print(f"book runs ready ({len(trained)} trained, {len(runs) - len(trained)} already cached)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
