"""tinyformer.files: atomic writes, their leftovers, and the hashes."""

import hashlib
import os
import stat

import pytest

from tinyformer.files import atomic_write_bytes, atomic_write_text, remove_stale_temp_files, sha256_bytes, sha256_file


def test_stale_temp_files_are_removed_and_others_kept(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"x" * 100)
    (tmp_path / "notes.tmp").write_text("mine")
    removed = remove_stale_temp_files(tmp_path, ["checkpoint.pt"])
    assert [p.name for p in removed] == [".checkpoint.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "notes.txt"
    atomic_write_text(path, "old")
    assert path.read_text() == "old"

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_text() == "old" and os.listdir(path.parent) == ["notes.txt"]


def test_atomic_write_gets_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o644


def test_sha256_of_bytes_and_of_a_file_agree_with_hashlib(tmp_path):
    data = os.urandom(3 << 20)  # more than one 1 MiB block
    (tmp_path / "blob").write_bytes(data)
    assert sha256_bytes(data) == sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
