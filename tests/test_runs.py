"""The book's trained runs: defined once, prepared before the chapters that load them."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tinyformer.book import runs
from tinyformer.book.runs import BOOK_RUN, is_cached
from tinyformer.model import preset
from tinyformer.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent


def small(cfg, **changes):
    return TrainConfig.from_dict({**cfg.to_dict(), "max_steps": 6, "warmup_steps": 2, "eval_interval": 3, **changes})


def load_extension():
    if str(ROOT / "_ext") not in sys.path:  # the extension imports its sibling modules, as Sphinx loads it
        sys.path.insert(0, str(ROOT / "_ext"))
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
    original = preset("original-toy", **runs.ORIGINAL_TOY.model_overrides)
    assert (original.norm_position, original.positions, original.ffn) == ("post", "sinusoidal", "relu")
    modern = preset("original-toy", **runs.MODERN_TOY.model_overrides)
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


def test_book_run_is_read_from_its_config_file():
    assert BOOK_RUN == TrainConfig.from_dict(json.loads((ROOT / "tinyformer" / "configs" / "book.json").read_text()))
    assert (BOOK_RUN.preset, BOOK_RUN.tokenizer, BOOK_RUN.max_steps) == ("book-small", "char", 270)


def test_cache_key_ignores_the_book_kit_but_not_the_library_or_the_config(tmp_path):
    package = tmp_path / "tinyformer"
    shutil.copytree(ROOT / "tinyformer", package, ignore=shutil.ignore_patterns("__pycache__"))
    key = runs.cache_key(BOOK_RUN, package)
    assert key == runs.cache_key(BOOK_RUN)  # a copy of the package: the same key
    for kit_file in ("book/page.py", "book/runs.py", "exercises/__init__.py", "configs/base_25m_gpu.json"):
        with open(package / kit_file, "a") as f:
            f.write("\n# an edit to the kit, an exercise or another run's config\n")
        assert runs.cache_key(BOOK_RUN, package) == key, kit_file
    (package / "book" / "new_figure.py").write_text("# a new kit module\n")
    assert runs.cache_key(BOOK_RUN, package) == key
    assert runs.cache_key(TrainConfig.from_dict({**BOOK_RUN.to_dict(), "seed": 1}), package) != key
    for library_file in ("model.py", "train/loop.py"):
        copy = tmp_path / library_file.replace("/", "_")
        shutil.copytree(package, copy)
        with open(copy / library_file, "a") as f:
            f.write("\n# an edit to the library\n")
        assert runs.cache_key(BOOK_RUN, copy) != key, library_file


def test_load_or_train_caches_the_run(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFORMER_CACHE", str(tmp_path / "cache"))
    first = runs.load_or_train(cfg, progress=False)
    second = runs.load_or_train(cfg, progress=False)
    assert second.final_val_loss == first.final_val_loss
    assert (second.config, second.steps, second.parameters, second.log) == (cfg, first.steps, first.parameters, first.log)
    ids = torch.randint(0, first.tokenizer.vocab_size, (1, 8))
    assert torch.equal(first.model(ids), second.model(ids))
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_load_or_train_heals_a_damaged_cache(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFORMER_CACHE", str(tmp_path / "cache"))
    c = small(cfg)
    first = runs.load_or_train(c, progress=False)
    (entry,) = (tmp_path / "cache").iterdir()
    (entry / "result.json").write_text('{"seconds": 1.0, "log": ')  # truncated
    with pytest.warns(RuntimeWarning, match=rf"cached run in {entry} is damaged .*JSONDecodeError"):
        healed = runs.load_or_train(c, progress=False)
    assert healed.log == first.log
    data = bytearray((entry / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (entry / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=rf"cached run in {entry} is damaged .*CheckpointError"):
        healed = runs.load_or_train(c, progress=False)
    assert healed.log == first.log
    assert runs.load_or_train(c, progress=False).log == first.log  # healthy again: loaded, no warning


def test_load_or_train_resumes_an_interrupted_entry(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFORMER_CACHE", str(tmp_path / "cache"))
    c = small(cfg)
    reference = train(c, progress=False)
    train(c, out_dir=runs.cache_dir_for(c), progress=False, stop_after=3)
    run = runs.load_or_train(c, progress=False)
    assert run.log == reference.log


def test_smoke_scaling_keeps_the_config_valid_and_resumes_consistent():
    scaled = runs.smoke_scaled({"max_steps": 320, "warmup_steps": 50, "eval_interval": 50, "checkpoint_interval": 50,
                                "eval_batches": 16, "batch_size": 32})
    assert scaled == {"max_steps": 5, "warmup_steps": 0, "eval_interval": 1, "checkpoint_interval": 1,
                      "eval_batches": 2, "batch_size": 4}
    assert runs.smoke_scaled({"max_steps": 640})["max_steps"] == 10  # `--max-steps 640 --resume` continues it
    for m in range(1, 700, 7):
        for w in range(0, m + 1, 5):
            s = runs.smoke_scaled({"max_steps": m, "warmup_steps": w})
            assert 0 <= s["warmup_steps"] <= s["max_steps"]
