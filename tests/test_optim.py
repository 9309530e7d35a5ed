"""tinyformer.optim: AdamW, weight-decay groups, the schedule and clipping, against PyTorch's."""

import pytest
import torch
import torch.nn.functional as F

from tinyformer.losses import lm_loss
from tinyformer.model import TransformerConfig, TransformerLM
from tinyformer.optim import AdamW, clip_grad_norm, clip_gradients, cosine_lr_schedule, make_optimizer, param_groups

TINY = TransformerConfig(vocab_size=20, context_length=8, d_model=16, n_layers=2, n_heads=2)


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


def test_schedule_without_warmup_starts_at_max_lr():
    assert cosine_lr_schedule(0, 1.0, 0.1, 0, 100) == 1.0
    assert cosine_lr_schedule(50, 1.0, 0.1, 0, 100) == pytest.approx(0.55)


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


def test_clip_gradients_fused_equals_scratch():
    a = [torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(3)]
    for p, q in zip(a, b):
        p.grad = torch.randn(4, 3) * 5
        q.grad = p.grad.clone()
    torch.testing.assert_close(clip_gradients(a, 1.0, "fused"), clip_gradients(b, 1.0, "scratch"))
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
