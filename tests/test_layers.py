import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformer.layers import (
    IMPLS,
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    RMSNorm,
    SwiGLU,
    attention_impl,
    check_impl,
    gelu,
    relu,
    silu,
    softmax,
    swiglu_hidden_dim,
)

from conftest import copy_linear, randomize_


@pytest.mark.parametrize("bias", [False, True])
def test_linear_matches_nn_linear(bias):
    ours = randomize_(Linear(7, 5, bias=bias))
    ref = nn.Linear(7, 5, bias=bias)
    copy_linear(ours, ref)
    x = torch.randn(3, 4, 7)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    assert ours.weight.shape == (5, 7)


def test_linear_init_is_truncated_normal_with_fan_scaled_std():
    layer = Linear(256, 512)
    std = math.sqrt(2 / (256 + 512))
    w = layer.weight.detach()
    assert w.abs().max() <= 3 * std + 1e-6
    # The truncated normal at +-3 sigma has std 0.9866 sigma.
    assert abs(w.std().item() - 0.9866 * std) < 0.02 * std
    assert layer.bias is None


def test_linear_rejects_wrong_input_width():
    with pytest.raises(ValueError, match="last dimension is 7, got shape \\(2, 6\\)"):
        Linear(7, 5)(torch.randn(2, 6))


def test_embedding_matches_nn_embedding():
    ours = Embedding(11, 6)
    ref = nn.Embedding(11, 6)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
    ids = torch.randint(0, 11, (4, 9))
    torch.testing.assert_close(ours(ids), ref(ids), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [11, -1])
def test_embedding_names_unknown_token_id(bad):
    with pytest.raises(ValueError, match=f"unknown token id {bad}: this Embedding has ids 0..10"):
        Embedding(11, 6)(torch.tensor([[0, bad]]))


def test_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integer token ids"):
        Embedding(11, 6)(torch.tensor([1.0]))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_matches_torch(dim):
    x = torch.randn(3, 5, 7)
    torch.testing.assert_close(softmax(x, dim=dim), F.softmax(x, dim=dim))


def test_softmax_is_stable_for_huge_logits():
    x = torch.randn(4, 10)
    for offset in (1000.0, -1000.0):
        out = softmax(x + offset, dim=-1)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, F.softmax(x, dim=-1))
        torch.testing.assert_close(out, F.softmax(x + offset, dim=-1))


def test_softmax_hand_values():
    out = softmax(torch.tensor([0.0, math.log(3.0)]))
    torch.testing.assert_close(out, torch.tensor([0.25, 0.75]))


def test_activations_match_torch():
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(relu(x), F.relu(x))
    torch.testing.assert_close(silu(x), F.silu(x))
    torch.testing.assert_close(gelu(x), F.gelu(x))  # the exact (erf) GELU


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_nn_layernorm(eps, bias):
    ours = randomize_(LayerNorm(16, eps=eps, bias=bias))
    ref = nn.LayerNorm(16, eps=eps, bias=bias)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
        if bias:
            ref.bias.copy_(ours.bias)
    x = torch.randn(2, 3, 16) * 5 + 3
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rmsnorm_matches_nn_rmsnorm(eps):
    ours = randomize_(RMSNorm(16, eps=eps))
    ref = nn.RMSNorm(16, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
    x = torch.randn(2, 3, 16) * 5
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("norm_cls,ref_cls", [(LayerNorm, nn.LayerNorm), (RMSNorm, nn.RMSNorm)])
def test_norms_compute_in_float32_and_cast_back(norm_cls, ref_cls):
    ours = norm_cls(64)
    ref = ref_cls(64, eps=1e-5)
    x = (torch.randn(4, 64) * 100 + 1000).to(torch.bfloat16)
    out = ours(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref(x.float()).to(torch.bfloat16))


def test_rmsnorm_hand_value():
    # x = (3, 4): mean square 12.5, so y = x / sqrt(12.5)
    out = RMSNorm(2, eps=0.0)(torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(out, torch.tensor([3.0, 4.0]) / math.sqrt(12.5))


@pytest.mark.parametrize("norm_cls", [LayerNorm, RMSNorm])
def test_norm_gradcheck_float64(norm_cls):
    norm = randomize_(norm_cls(5)).double()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(norm, (x,))


def test_norm_rejects_wrong_width():
    with pytest.raises(ValueError, match="RMSNorm expects input whose last dimension is 8"):
        RMSNorm(8)(torch.randn(2, 4))


@pytest.mark.parametrize("activation,fn", [("relu", F.relu), ("gelu", F.gelu)])
def test_feed_forward_matches_functional_reference(activation, fn):
    ff = randomize_(FeedForward(8, 32, activation=activation))
    x = torch.randn(2, 5, 8)
    expected = F.linear(fn(F.linear(x, ff.w1.weight, ff.w1.bias)), ff.w2.weight, ff.w2.bias)
    torch.testing.assert_close(ff(x), expected)


def test_swiglu_matches_functional_reference():
    ff = SwiGLU(16, 48)
    x = torch.randn(2, 5, 16)
    expected = F.linear(F.silu(F.linear(x, ff.w1.weight)) * F.linear(x, ff.w3.weight), ff.w2.weight)
    torch.testing.assert_close(ff(x), expected)


def test_swiglu_hidden_dim_rounds_8_thirds_up_to_64():
    assert swiglu_hidden_dim(512) == 1408  # 8/3 * 512 = 1365.3 -> 1408
    assert swiglu_hidden_dim(768) == 2048  # exactly 2048
    assert swiglu_hidden_dim(8) == 64
    assert SwiGLU(512).w1.weight.shape == (1408, 512)


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        FeedForward(8, 32, activation="tanh")


# --- the fused path: the same maths through PyTorch's kernels --------------------------------


def _outputs_and_grads(module, x):
    x = x.clone().requires_grad_(True)
    out = module(x)
    out.backward(torch.randn_like(out, generator=torch.Generator().manual_seed(1)))
    return out.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize(
    "make",
    [
        lambda impl: Linear(8, 6, bias=True, impl=impl),
        lambda impl: LayerNorm(8, impl=impl),
        lambda impl: LayerNorm(8, bias=False, impl=impl),
        lambda impl: RMSNorm(8, impl=impl),
        lambda impl: FeedForward(8, 32, activation="gelu", impl=impl),
        lambda impl: FeedForward(8, 32, activation="relu", impl=impl),
        lambda impl: SwiGLU(8, 24, impl=impl),
    ],
    ids=["linear", "layernorm", "layernorm-nobias", "rmsnorm", "ffn-gelu", "ffn-relu", "swiglu"],
)
def test_fused_pieces_equal_scratch_outputs_and_gradients(make):
    scratch = randomize_(make("scratch"))
    fused = make("fused")
    fused.load_state_dict(scratch.state_dict())
    x = torch.randn(3, 5, 8) * 2 + 1
    out_s, dx_s, grads_s = _outputs_and_grads(scratch, x)
    out_f, dx_f, grads_f = _outputs_and_grads(fused, x)
    torch.testing.assert_close(out_f, out_s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx_f, dx_s, rtol=1e-4, atol=1e-5)
    for name in grads_s:
        torch.testing.assert_close(grads_f[name], grads_s[name], rtol=1e-4, atol=1e-5, msg=name)


def test_fused_norms_keep_the_float32_upcast():
    x = (torch.randn(4, 64) * 100 + 1000).to(torch.bfloat16)
    for norm_cls, ref_cls in ((LayerNorm, nn.LayerNorm), (RMSNorm, nn.RMSNorm)):
        out = norm_cls(64, impl="fused")(x)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out, ref_cls(64, eps=1e-5)(x.float()).to(torch.bfloat16))


def test_unknown_impl_is_named():
    with pytest.raises(ValueError, match="unknown impl 'fast': expected one of \\('scratch', 'fused'\\)"):
        LayerNorm(8, impl="fast")
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        SwiGLU(8, impl="fast")


def test_attention_impl_is_the_one_rule():
    assert [attention_impl(impl) for impl in IMPLS] == list(IMPLS)  # None: follows impl
    assert attention_impl("scratch", "fused") == "fused"  # fused attention alone
    assert attention_impl("fused", "fused") == "fused"
    with pytest.raises(ValueError, match="impl='fused'.*attn_impl='scratch'"):
        attention_impl("fused", "scratch")
    with pytest.raises(ValueError, match="unknown attn_impl 'fast': expected one of"):
        check_impl("fast", "attn_impl")
