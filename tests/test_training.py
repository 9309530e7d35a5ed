import io
import math
import os
import stat

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyformer.model import TransformerConfig, TransformerLM
from tinyformer.training import (
    AdamW,
    CheckpointError,
    clip_grad_norm,
    cosine_lr_schedule,
    cross_entropy,
    get_batch,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    tensor_checksum,
)

TINY = TransformerConfig(vocab_size=20, context_length=8, d_model=16, n_layers=2, n_heads=2)


def test_cross_entropy_matches_torch():
    logits, targets = torch.randn(4, 7, 11), torch.randint(0, 11, (4, 7))
    torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits.view(-1, 11), targets.view(-1)))


def test_cross_entropy_is_stable_for_extreme_logits():
    logits, targets = torch.randn(16, 11) * 1000, torch.randint(0, 11, (16,))
    ours = cross_entropy(logits, targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets))


def test_cross_entropy_hand_value():
    # uniform over 4 classes: loss is log 4 whatever the target
    assert cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1, 3])).item() == pytest.approx(math.log(4))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="unknown target id 11: logits cover ids 0..10"):
        cross_entropy(torch.randn(2, 11), torch.tensor([1, 11]))
    with pytest.raises(ValueError, match="logits .* and targets .* disagree"):
        cross_entropy(torch.randn(2, 11), torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("weight_decay,betas", [(0.01, (0.9, 0.999)), (0.1, (0.8, 0.95))])
def test_adamw_matches_torch_over_many_steps(weight_decay, betas):
    torch.manual_seed(0)
    ours_model = TransformerLM(TINY)
    ref_model = TransformerLM(TINY)
    ref_model.load_state_dict(ours_model.state_dict())
    kwargs = dict(lr=3e-3, betas=betas, eps=1e-8, weight_decay=weight_decay)
    ours_opt = AdamW(ours_model.parameters(), **kwargs)
    ref_opt = torch.optim.AdamW(ref_model.parameters(), foreach=False, **kwargs)
    data = torch.randint(0, 20, (4, 9))
    for _ in range(120):
        for model, opt in ((ours_model, ours_opt), (ref_model, ref_opt)):
            opt.zero_grad()
            loss = F.cross_entropy(model(data[:, :-1]).flatten(0, 1), data[:, 1:].flatten())
            loss.backward()
            opt.step()
    for (name, p), q in zip(ours_model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_adamw_rejects_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="learning rate must be >= 0"):
        AdamW(p, lr=-1)
    with pytest.raises(ValueError, match="betas must be in"):
        AdamW(p, betas=(1.0, 0.9))


def test_cosine_schedule_boundaries():
    kw = dict(max_lr=1.0, min_lr=0.1, warmup_iters=10, cosine_iters=110)
    # warmup: max_lr * (it + 1) / (warmup + 1), so the first update (it = 0) already has lr > 0
    assert cosine_lr_schedule(0, **kw) == pytest.approx(1 / 11)
    assert cosine_lr_schedule(4, **kw) == pytest.approx(5 / 11)
    assert cosine_lr_schedule(9, **kw) == pytest.approx(10 / 11)
    assert cosine_lr_schedule(10, **kw) == 1.0
    assert cosine_lr_schedule(60, **kw) == pytest.approx(0.55)  # halfway: (max + min) / 2
    assert cosine_lr_schedule(110, **kw) == pytest.approx(0.1)
    assert cosine_lr_schedule(1000, **kw) == 0.1


def test_cosine_schedule_matches_torch_cosine_annealing():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=0.1)
    for step in range(101):
        assert cosine_lr_schedule(10 + step, 1.0, 0.1, 10, 110) == pytest.approx(sched.get_last_lr()[0], abs=1e-9)
        opt.step()
        sched.step()


def test_clip_grad_norm_matches_torch_and_skips_missing_grads():
    a = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a[:2], b[:2]):  # the third parameter gets no gradient
        g = torch.randn_like(p) * 10
        p.grad, q.grad = g.clone(), g.clone()
    ours = clip_grad_norm(a, 1.0)
    ref = torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(ours, ref)
    for p, q in zip(a[:2], b[:2]):
        torch.testing.assert_close(p.grad, q.grad)
    assert a[2].grad is None
    total = torch.sqrt(sum((p.grad**2).sum() for p in a[:2]))
    assert total.item() == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_alone():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([0.1, 0.2, 0.2])
    assert clip_grad_norm([p], 1.0).item() == pytest.approx(0.3)
    torch.testing.assert_close(p.grad, torch.tensor([0.1, 0.2, 0.2]))


def test_get_batch_windows_and_targets():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = get_batch(tokens, 8, 5, device="cpu", generator=torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (8, 5) and x.dtype == torch.long
    assert (y == x + 1).all()  # arange: each target is the next token
    assert (x[:, 1:] == x[:, :-1] + 1).all()
    assert x.min() >= 0 and y.max() <= 99


def test_get_batch_is_reproducible_and_covers_every_start():
    tokens = torch.arange(12)
    a = get_batch(tokens, 200, 4, generator=torch.Generator().manual_seed(3))
    b = get_batch(tokens, 200, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])
    assert set(a[0][:, 0].tolist()) == set(range(8))  # starts 0..len-T-1


def test_get_batch_reads_memmap(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(50, dtype=np.uint16).tofile(path)
    x, y = get_batch(np.memmap(path, dtype=np.uint16, mode="r"), 2, 4)
    assert (y == x + 1).all()


def test_get_batch_rejects_short_data():
    with pytest.raises(ValueError, match="need at least context_length \\+ 1 = 9 tokens"):
        get_batch(np.arange(8), 2, 8)


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


def test_schedule_without_warmup_starts_at_max_lr():
    assert cosine_lr_schedule(0, 1.0, 0.1, 0, 100) == 1.0
    assert cosine_lr_schedule(50, 1.0, 0.1, 0, 100) == pytest.approx(0.55)


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


def test_stale_temp_files_are_removed_and_others_kept(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"x" * 100)
    (tmp_path / "notes.tmp").write_text("mine")
    removed = remove_stale_temp_files(tmp_path, ["checkpoint.pt"])
    assert [p.name for p in removed] == [".checkpoint.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


# --- weight-decay groups, make_optimizer and the fused training pieces ------------------------

from tinyformer.training import clip_gradients, lm_loss, make_optimizer, param_groups  # noqa: E402

GPT2_BIAS = TINY.replace(positions="learned", norm="layer", ffn="gelu", bias=True)


def _names(model, params):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return sorted(by_id[id(p)] for p in params)


def _hand_made_no_decay(n_layers: int) -> list[str]:
    """Every bias and norm gain of a GPT-2-style model with biases, listed by hand."""
    names = ["final_norm.bias", "final_norm.weight"]
    for i in range(n_layers):
        b = f"blocks.{i}."
        names += [b + f"self_attn.{p}_proj.bias" for p in "qkvo"]
        names += [b + "ffn.w1.bias", b + "ffn.w2.bias"]
        names += [b + f"norm{j}.{w}" for j in (1, 2) for w in ("weight", "bias")]
    return sorted(names)


def test_param_groups_against_a_hand_made_expectation():
    model = TransformerLM(GPT2_BIAS)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert _names(model, no_decay["params"]) == _hand_made_no_decay(2)
    assert all(p.dim() == 2 for p in decay["params"])  # with embeddings decayed: exactly the 2-D weights
    assert "embed.token_embedding.weight" in _names(model, decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

    decay, no_decay = param_groups(model, 0.1, no_decay_on=("norm", "bias", "embedding"))
    assert _names(model, no_decay["params"]) == sorted(
        _hand_made_no_decay(2) + ["embed.token_embedding.weight", "embed.position.embedding.weight"])

    decay, no_decay = param_groups(model, 0.1, no_decay_on=())
    assert no_decay["params"] == []


def test_param_groups_list_a_tied_matrix_once():
    model = TransformerLM(GPT2_BIAS.replace(tie_embeddings=True))
    decay, no_decay = param_groups(model, 0.1)
    shared = model.lm_head.weight
    assert sum(p is shared for p in decay["params"] + no_decay["params"]) == 1
    decay, no_decay = param_groups(model, 0.1, no_decay_on=("embedding",))
    assert any(p is shared for p in no_decay["params"])


def test_param_groups_rejects_unknown_kinds():
    with pytest.raises(ValueError, match=r"unknown no_decay_on entries \['gains'\]"):
        param_groups(TransformerLM(TINY), 0.1, no_decay_on=("gains",))


def _train(model, opt, data, steps=60, impl="scratch"):
    for _ in range(steps):
        opt.zero_grad()
        lm_loss(model(data[:, :-1]), data[:, 1:], impl).backward()
        clip_gradients(model.parameters(), 1.0, impl)
        opt.step()


@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_grouped_optimizer_matches_torch_adamw_param_groups(impl):
    torch.manual_seed(0)
    ours = TransformerLM(GPT2_BIAS)
    ref = TransformerLM(GPT2_BIAS)
    ref.load_state_dict(ours.state_dict())
    kwargs = dict(lr=3e-3, betas=(0.9, 0.99), eps=1e-8)
    ours_opt = make_optimizer(ours, weight_decay=0.1, impl=impl, **kwargs)
    # The reference groups, written independently: the nanoGPT rule (decay the >= 2-D tensors).
    groups = [{"params": [p for p in ref.parameters() if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in ref.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    ref_opt = torch.optim.AdamW(groups, foreach=False, **kwargs)
    data = torch.randint(0, 20, (4, 9))
    _train(ours, ours_opt, data, impl=impl)
    _train(ref, ref_opt, data, impl="scratch")
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        if name.endswith("k_proj.bias"):
            # A key bias shifts every score of a query equally, so softmax cancels it: its gradient
            # is rounding noise, which Adam's m / sqrt(v) turns into full-size random steps.
            continue
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    norm_gain = ours.blocks[0].norm1.weight
    assert not torch.equal(norm_gain, torch.ones_like(norm_gain))  # it trained


def test_adamw_step_count_is_a_plain_number_and_resumes_from_torch_state():
    model = TransformerLM(TINY)
    opt = AdamW(model.parameters(), lr=1e-3)
    data = torch.randint(0, 20, (2, 9))
    _train(model, opt, data, steps=2)
    assert all(type(s["step"]) is float and s["step"] == 2.0 for s in opt.state.values())
    # A state dict whose steps are tensors (torch.optim.AdamW's format) continues the count.
    ref = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    _train(model, ref, data, steps=1)
    opt.load_state_dict(ref.state_dict())
    _train(model, opt, data, steps=1)
    assert all(s["step"] == 2.0 for s in opt.state.values())


def test_lm_loss_and_clip_gradients_fused_equal_scratch():
    logits, targets = torch.randn(3, 5, 11, requires_grad=True), torch.randint(0, 11, (3, 5))
    torch.testing.assert_close(lm_loss(logits, targets, "fused"), lm_loss(logits, targets, "scratch"))
    with pytest.raises(ValueError, match="disagree"):
        lm_loss(logits, targets[:, :3], "fused")
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        lm_loss(logits, targets, "fast")
    a = [torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(3)]
    for p, q in zip(a, b):
        p.grad = torch.randn(4, 3) * 5
        q.grad = p.grad.clone()
    torch.testing.assert_close(clip_gradients(a, 1.0, "fused"), clip_gradients(b, 1.0, "scratch"))
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
