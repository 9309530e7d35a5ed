"""tinyformer.checkpoints: round trips, atomic writes, and a clear error for every kind of damage."""

import io
import os
import stat

import pytest
import torch
import torch.nn.functional as F

from tinyformer.checkpoints import CheckpointError, load_checkpoint, save_checkpoint, tensor_checksum
from tinyformer.model import TransformerConfig, TransformerLM
from tinyformer.optim import AdamW

TINY = TransformerConfig(vocab_size=20, context_length=8, d_model=16, n_layers=2, n_heads=2)


def _trained_pair():
    model = TransformerLM(TINY)
    opt = AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 20, (2, 8))
    F.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    opt.step()
    return model, opt


def test_checkpoint_round_trip(tmp_path):
    model, opt = _trained_pair()
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, model, opt, iteration=7, config=TINY.to_dict(), extra={"note": "hi"})
    assert os.listdir(path.parent) == ["model.pt"]  # no temp file left behind
    fresh = TransformerLM(TINY)
    fresh_opt = AdamW(fresh.parameters(), lr=1e-3)
    payload = load_checkpoint(path, fresh, fresh_opt)
    assert payload["iteration"] == 7 and payload["config"] == TINY.to_dict() and payload["extra"] == {"note": "hi"}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model, opt = _trained_pair()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, opt, iteration=1)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, iteration=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    model, opt = _trained_pair()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, opt, iteration=1)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": bytes(range(256)) * 2, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(path, TransformerLM(TINY))


def test_foreign_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    model, opt = _trained_pair()
    foreign = tmp_path / "foreign.pt"
    torch.save(model.state_dict(), foreign)
    with pytest.raises(CheckpointError, match="is not a tinyformer checkpoint"):
        load_checkpoint(foreign)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, None, iteration=1, config=TINY.to_dict())
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(path, TransformerLM(TINY.replace(d_model=32)))
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(path, TransformerLM(TINY), AdamW(model.parameters()))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_round_trip_through_a_file_object():
    model, opt = _trained_pair()
    buffer = io.BytesIO()
    save_checkpoint(buffer, model, opt, iteration=3)
    buffer.seek(0)
    fresh = TransformerLM(TINY)
    payload = load_checkpoint(buffer, fresh, AdamW(fresh.parameters(), lr=1e-3))
    assert payload["iteration"] == 3 and payload["config"] == TINY.to_dict()  # the config is recorded by default
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(io.BytesIO(b"not a checkpoint"))


def test_checkpoint_file_gets_the_umask_mode_not_0600(tmp_path):
    model, opt = _trained_pair()
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "model.pt", model, opt, iteration=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "model.pt").st_mode) == 0o644


def test_flipped_byte_in_the_weights_is_caught_by_the_checksum(tmp_path):
    model, opt = _trained_pair()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, opt, iteration=1)
    data = bytearray(path.read_bytes())
    weight = model.state_dict()["lm_head.weight"].numpy().tobytes()  # stored uncompressed in the zip
    at = bytes(data).index(weight) + len(weight) // 2
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt: its tensors do not match the checksum"):
        load_checkpoint(path)


def test_checkpoint_into_a_model_with_another_config_names_the_fields(tmp_path):
    model, opt = _trained_pair()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, opt, iteration=1)
    # Same tensor shapes, different maths: only the recorded config can tell.
    with pytest.raises(CheckpointError, match="does not fit this model.*positions: 'rope' vs 'none'"):
        load_checkpoint(path, TransformerLM(TINY.replace(positions="none")))


def test_checkpoint_without_model_entry_is_a_clear_error(tmp_path):
    model, opt = _trained_pair()
    buffer = io.BytesIO()
    save_checkpoint(buffer, model, opt, iteration=1)
    buffer.seek(0)
    payload = torch.load(buffer, weights_only=True)
    del payload["model"]
    torch.save(payload, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match="'model' entry is missing"):
        load_checkpoint(tmp_path / "nomodel.pt")


def test_checksum_sees_every_tensor_and_its_dtype():
    a = {"w": torch.zeros(3), "opt": {"m": [torch.ones(2)]}}
    assert tensor_checksum(a) == tensor_checksum({"w": torch.zeros(3), "opt": {"m": [torch.ones(2)]}})
    assert tensor_checksum(a) != tensor_checksum({"w": torch.zeros(3), "opt": {"m": [torch.tensor([1.0, 2.0])]}})
    assert tensor_checksum(a) != tensor_checksum({"w": torch.zeros(3, dtype=torch.float64), "opt": {"m": [torch.ones(2)]}})


def _resaved(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


@pytest.mark.parametrize("what, change", [
    ("iteration", lambda p: p.update(iteration=p["iteration"] + 2)),
    ("a logged value in extra", lambda p: p["extra"]["log"].__setitem__(0, 2.5)),
    ("the model config", lambda p: p["config"].update(n_layers=3)),
    ("an optimiser hyperparameter", lambda p: p["optimizer"]["param_groups"][0].update(lr=0.5)),
    ("the tensor checksum", lambda p: p.update(checksum="0" * 64)),
])
def test_the_checksum_covers_the_whole_payload(tmp_path, what, change):
    model, opt = _trained_pair()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, opt, iteration=10, config=TINY.to_dict(), extra={"log": [1.0, 2.0]})
    load_checkpoint(path)
    _resaved(path, change)
    with pytest.raises(CheckpointError, match=f"{path} is corrupt"):
        load_checkpoint(path)


def test_a_checkpoint_of_the_previous_format_is_named_as_older(tmp_path):
    model, opt = _trained_pair()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, opt, iteration=1)

    def as_v2(payload):
        payload["format"] = "tinyformer-checkpoint-v2"
        del payload["payload_sha256"]

    _resaved(path, as_v2)
    with pytest.raises(CheckpointError, match=r"format 'tinyformer-checkpoint-v2'.*written by an older tinyformer"):
        load_checkpoint(path)
