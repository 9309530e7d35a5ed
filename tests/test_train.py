import csv
import json

import numpy as np
import pytest
import torch

from tinyformer.train import TrainConfig, load_or_train, main, ngram_baselines, prepare_data, train

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void. " * 60)


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return TrainConfig(
        corpus=str(path), max_steps=24, warmup_steps=4, eval_interval=8, eval_batches=2, batch_size=4,
        model_overrides={"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "context_length": 16},
    )


def test_training_lowers_the_loss_and_writes_its_outputs(cfg, tmp_path):
    result = train(cfg, out_dir=tmp_path / "run", progress=False)
    log = result["log"]
    assert log["val_step"] == [8, 16, 24] and len(log["train_loss"]) == 24
    assert log["train_loss"][-1] < log["train_loss"][0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "log.csv", "result.json", "tokenizer.json"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == 24 and rows[7]["val_loss"] != "" and rows[0]["val_loss"] == ""
    assert json.loads((tmp_path / "run" / "result.json").read_text())["final_val_loss"] == pytest.approx(log["val_loss"][-1])


def test_resume_continues_the_same_loss_trajectory_bit_for_bit(cfg, tmp_path):
    data = prepare_data(cfg)
    full = train(cfg, out_dir=tmp_path / "full", progress=False, data=data)
    train(cfg, out_dir=tmp_path / "split", progress=False, data=data, stop_after=10)
    resumed = train(cfg, out_dir=tmp_path / "split", progress=False, data=data, resume=True)
    assert resumed["log"]["train_loss"] == full["log"]["train_loss"]
    assert resumed["log"]["val_loss"] == full["log"]["val_loss"]
    for a, b in zip(full["model"].state_dict().values(), resumed["model"].state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_a_different_config(cfg, tmp_path):
    train(cfg, out_dir=tmp_path / "run", progress=False, stop_after=5)
    cfg.lr = 1e-3
    with pytest.raises(ValueError, match="different TrainConfig.*lr: 0.003 vs 0.001"):
        train(cfg, out_dir=tmp_path / "run", progress=False, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, out_dir=tmp_path / "empty", progress=False, resume=True)


def test_ngram_baselines_hand_computed():
    # train "abab...": after a always b, after b always a. alpha -> 0 makes the bigram exact.
    train_tokens = np.array([0, 1] * 50)
    val_tokens = np.array([0, 1, 0, 1])
    result = ngram_baselines(train_tokens, val_tokens, vocab_size=2, alpha=1e-9)
    assert result["unigram"] == pytest.approx(np.log(2), abs=1e-6)
    assert result["bigram"] == pytest.approx(0.0, abs=1e-6)


def test_load_or_train_caches_the_run(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFORMER_CACHE", str(tmp_path / "cache"))
    first = load_or_train(cfg, progress=False)
    second = load_or_train(cfg, progress=False)
    assert second["final_val_loss"] == first["final_val_loss"]
    ids = torch.randint(0, first["tokenizer"].vocab_size, (1, 8))
    assert torch.equal(first["model"](ids), second["model"](ids))
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_command_line(cfg, tmp_path, capsys):
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    main(["--config", str(config_file), "--out", str(tmp_path / "cli"), "--max-steps", "8", "--no-compile"])
    assert "final val loss" in capsys.readouterr().out
    assert (tmp_path / "cli" / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"colour": 1})
