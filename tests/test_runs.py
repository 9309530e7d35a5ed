"""The book's trained runs: defined once, prepared before the chapters that load them."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tinyformer.book import runs
from tinyformer.model import preset
from tinyformer.train import BOOK_RUN, is_cached

ROOT = Path(__file__).resolve().parent.parent


def load_extension():
    spec = importlib.util.spec_from_file_location("tinyformer_book_ext", ROOT / "_ext" / "tinyformer_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_prepares_runs_for_exactly_the_chapters_that_load_them():
    loaders = sorted(p.stem for p in (ROOT / "book").glob("*.md")
                     if re.search(r"book_run\(|load_or_train\(|where_we_are\(\"(inside|sampling|training)\"\)", p.read_text()))
    assert sorted(runs.RUN_CHAPTERS) == loaders
    assert load_extension().RUN_CHAPTERS == runs.RUN_CHAPTERS


def test_the_toys_change_only_the_model():
    for toy in (runs.ORIGINAL_TOY, runs.MODERN_TOY):
        assert replace(toy, preset=BOOK_RUN.preset, model_overrides=BOOK_RUN.model_overrides) == BOOK_RUN
        assert toy.model_overrides["context_length"] == preset(BOOK_RUN.preset).context_length
    original = preset("seed003-toy", **runs.ORIGINAL_TOY.model_overrides)
    assert (original.norm_position, original.positions, original.ffn) == ("post", "sinusoidal", "relu")
    modern = preset("seed003-toy", **runs.MODERN_TOY.model_overrides)
    assert (modern.norm_position, modern.positions, modern.ffn, modern.bias) == ("pre", "rope", "swiglu", False)
    assert (modern.d_model, modern.n_layers, modern.n_heads) == (original.d_model, original.n_layers, original.n_heads)


def test_prepare_trains_only_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYFORMER_CACHE", str(tmp_path))
    tiny = replace(BOOK_RUN, max_steps=2, warmup_steps=1, eval_interval=2, eval_batches=1, batch_size=2,
                   model_overrides={"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "context_length": 8})
    monkeypatch.setattr(runs, "BOOK_RUNS", {"a": tiny, "b": replace(tiny, seed=1)})
    assert runs.missing_runs() == ["a", "b"]
    assert runs.prepare_runs(progress=False) == ["a", "b"]
    assert all(is_cached(cfg) for cfg in runs.BOOK_RUNS.values())
    assert "[1/2] training the book's run 'a'" in capsys.readouterr().err
    assert runs.missing_runs() == [] and runs.prepare_runs(progress=False) == []
