import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformer.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    fused_scaled_dot_product_attention,
    scaled_dot_product_attention,
)
from tinyformer.positions import RotaryPositionalEmbedding

from conftest import copy_mha_into_torch


def test_causal_mask_hand_values():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # two cached positions: the 2 queries are positions 2 and 3 of 4 keys
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_sdpa_matches_torch_without_mask():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_sdpa_matches_torch_with_boolean_mask():
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = torch.rand(2, 5, 6) > 0.5
    mask[..., 0] = True  # every query keeps at least one key
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    )


def test_sdpa_causal_matches_torch_is_causal():
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, causal_mask(6)),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
    )


def test_sdpa_weights_are_distributions_with_zeros_where_masked():
    q, k, v = (torch.randn(4, 4) for _ in range(3))
    _, w = scaled_dot_product_attention(q, k, v, causal_mask(4), return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(4))
    assert (w[~causal_mask(4)] == 0).all()


def test_sdpa_hand_example():
    # Two keys, one query equally similar to both: the output is the mean of the values.
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    v = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), torch.tensor([[1.0, 2.0]]))


def test_sdpa_gradcheck_float64():
    q, k, v = (torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = causal_mask(3)
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask), (q, k, v))


def test_sdpa_errors_name_the_problem():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="q and k must share their last dimension"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 3), v)
    with pytest.raises(ValueError, match="k and v must have the same number of positions"):
        scaled_dot_product_attention(q, k, torch.randn(2, 4, 4))
    with pytest.raises(TypeError, match="mask must be boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 5, dtype=torch.bool))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_nn_multihead_attention(bias, causal):
    ours = MultiHeadAttention(16, 4, causal=causal, bias=bias)
    if bias:
        for proj in (ours.q_proj, ours.k_proj, ours.v_proj, ours.o_proj):
            nn.init.normal_(proj.bias)
    ref = nn.MultiheadAttention(16, 4, bias=bias, batch_first=True)
    copy_mha_into_torch(ours, ref)
    x = torch.randn(2, 6, 16)
    # nn.MultiheadAttention's boolean mask is the opposite: True = blocked.
    ref_mask = ~causal_mask(6) if causal else None
    expected, expected_w = ref(x, x, x, attn_mask=ref_mask, average_attn_weights=False)
    out, w = ours(x, return_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w, expected_w)


def test_cross_attention_matches_nn_multihead_attention():
    ours = MultiHeadAttention(12, 3)
    ref = nn.MultiheadAttention(12, 3, bias=False, batch_first=True)
    copy_mha_into_torch(ours, ref)
    x, memory = torch.randn(2, 4, 12), torch.randn(2, 9, 12)
    expected, expected_w = ref(x, memory, memory, average_attn_weights=False)
    out, w = ours(x, context=memory, return_weights=True)
    torch.testing.assert_close(out, expected)
    assert w.shape == (2, 3, 4, 9)
    torch.testing.assert_close(w, expected_w)


def test_heads_are_stacked_along_output_rows():
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    q = mha.q_proj(x)
    head1 = x @ mha.q_proj.weight[4:8].T  # rows 4..7 belong to head 1
    torch.testing.assert_close(q[..., 4:8], head1)


def test_d_model_not_divisible_by_heads_is_a_clear_error():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_heads \(4\)"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match=r"n_heads \(4\) must be divisible by n_kv_heads \(3\)"):
        MultiHeadAttention(16, 4, n_kv_heads=3)


def test_attention_rejects_wrong_input_shapes():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"expects x of shape \(B, T, 8\), got \(3, 8\)"):
        mha(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"context of shape \(B, S, 8\)"):
        mha(torch.randn(1, 3, 8), context=torch.randn(1, 3, 6))


def test_rope_attention_equals_attention_on_rotated_q_and_k():
    rope = RotaryPositionalEmbedding(4, 16)
    mha = MultiHeadAttention(8, 2, causal=True, rope=rope)
    x = torch.randn(2, 5, 8)
    B, T = 2, 5
    q = mha.q_proj(x).view(B, T, 2, 4).transpose(1, 2)
    k = mha.k_proj(x).view(B, T, 2, 4).transpose(1, 2)
    v = mha.v_proj(x).view(B, T, 2, 4).transpose(1, 2)
    pos = torch.arange(T)
    ref = F.scaled_dot_product_attention(rope(q, pos), rope(k, pos), v, is_causal=True)
    expected = mha.o_proj(ref.transpose(1, 2).reshape(B, T, 8))
    torch.testing.assert_close(mha(x), expected)


def test_gqa_with_all_kv_heads_equals_plain_multi_head():
    plain = MultiHeadAttention(16, 4, causal=True)
    gqa = MultiHeadAttention(16, 4, causal=True, n_kv_heads=4)
    gqa.load_state_dict(plain.state_dict())
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(gqa(x), plain(x))


def test_gqa_shares_each_kv_head_across_its_group():
    mha = MultiHeadAttention(16, 4, causal=True, n_kv_heads=2)
    assert mha.k_proj.weight.shape == (8, 16)  # 2 kv heads x 4 features
    x = torch.randn(1, 5, 16)
    q = mha.q_proj(x).view(1, 5, 4, 4).transpose(1, 2)
    k = mha.k_proj(x).view(1, 5, 2, 4).transpose(1, 2)
    v = mha.v_proj(x).view(1, 5, 2, 4).transpose(1, 2)
    # query heads 0,1 read kv head 0; heads 2,3 read kv head 1
    k_full, v_full = k[:, [0, 0, 1, 1]], v[:, [0, 0, 1, 1]]
    ref = F.scaled_dot_product_attention(q, k_full, v_full, is_causal=True)
    expected = mha.o_proj(ref.transpose(1, 2).reshape(1, 5, 16))
    torch.testing.assert_close(mha(x), expected)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("use_rope", [False, True])
def test_fused_path_equals_scratch_path(n_kv_heads, use_rope):
    rope = RotaryPositionalEmbedding(4, 32) if use_rope else None
    scratch = MultiHeadAttention(16, 4, causal=True, rope=rope, n_kv_heads=n_kv_heads)
    fused = MultiHeadAttention(16, 4, causal=True, rope=rope, n_kv_heads=n_kv_heads, attn_impl="fused")
    fused.load_state_dict(scratch.state_dict())
    x = torch.randn(3, 9, 16)
    torch.testing.assert_close(fused(x), scratch(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="never materialises the weights"):
        fused(x, return_weights=True)


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_kv_cache_step_by_step_equals_full_sequence(n_kv_heads):
    mha = MultiHeadAttention(16, 4, causal=True, rope=RotaryPositionalEmbedding(4, 32), n_kv_heads=n_kv_heads)
    x = torch.randn(2, 8, 16)
    full = mha(x)
    cache = KVCache()
    prefill = mha(x[:, :3], kv_cache=cache)
    steps = [mha(x[:, t : t + 1], kv_cache=cache) for t in range(3, 8)]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), full, rtol=1e-5, atol=1e-5)
    assert len(cache) == 8
    assert cache.k.shape == (2, n_kv_heads, 8, 4)
    assert cache.nbytes() == 2 * 2 * n_kv_heads * 8 * 4 * 4


# ---------------------------------------------------------------- masks: scratch == fused


def _reference_attention(q, k, v, allowed, bias):
    """Row by row in float64: softmax over the allowed keys only; a row with no
    allowed key is all zeros (the documented choice). Independent of both paths."""
    q, k, v = q.double(), k.double(), v.double()
    shape = torch.broadcast_shapes(q.shape[:-1] + (k.shape[-2],), allowed.shape, bias.shape)
    allowed, bias = allowed.expand(shape), bias.double().expand(shape)
    lead = shape[:-2]
    q, k, v = q.expand(*lead, *q.shape[-2:]), k.expand(*lead, *k.shape[-2:]), v.expand(*lead, *v.shape[-2:])
    weights = torch.zeros(shape, dtype=torch.float64)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape[:-1]]).reshape(-1, len(shape) - 1).tolist():
        idx = tuple(idx)
        keep = allowed[idx]
        if keep.any():
            scores = (k[idx[:-1]] @ q[idx]) / q.shape[-1] ** 0.5 + bias[idx]  # (Tk,)
            weights[idx][keep] = torch.softmax(scores[keep], dim=0)
    return (weights @ v).float(), weights.float()


def _mask_cases():
    B, H, Tq, Tk = 2, 3, 4, 6
    g = torch.Generator().manual_seed(1)
    rand = torch.rand(B, H, Tq, Tk, generator=g) > 0.5
    empty_rows = rand.clone()
    empty_rows[0, 1, 2] = False  # one fully masked query
    empty_rows[1, :, 0] = False  # one query masked in every head
    padding = torch.ones(B, 1, 1, Tk, dtype=torch.bool)
    padding[1, ..., 3:] = False  # sequence 1 has 3 real keys
    bias = torch.randn(B, H, Tq, Tk, generator=g)
    zero = torch.zeros(())
    cases = {
        "random bool": (rand, rand, zero),
        "causal, non-square (Tq < Tk)": (causal_mask(Tq, Tk),) * 2 + (zero,),
        "fully masked rows": (empty_rows, empty_rows, zero),
        "every key masked": (torch.zeros(Tq, Tk, dtype=torch.bool),) * 2 + (zero,),
        "broadcast (1, 1, Tq, Tk)": (rand[:1, :1], rand[:1, :1], zero),
        "key padding (B, 1, 1, Tk)": (padding, padding, zero),
    }
    for name, (mask, allowed, _) in list(cases.items()):
        as_float = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
        cases[name + ", as a 0/-inf float mask"] = (as_float, allowed, zero)
    finite = bias.masked_fill(~empty_rows, float("-inf"))
    cases["float bias with -inf and fully masked rows"] = (finite, empty_rows, finite.masked_fill(~empty_rows, 0))
    cases["float64 bias (cast to the query dtype)"] = (bias.double(), torch.ones((), dtype=torch.bool), bias)
    return (B, H, Tq, Tk), cases


_SHAPE, _CASES = _mask_cases()


@pytest.mark.parametrize("name", list(_CASES))
def test_scratch_and_fused_agree_on_every_mask(name):
    mask, allowed, bias = _CASES[name]
    B, H, Tq, Tk = _SHAPE
    q, k, v = torch.randn(B, H, Tq, 8), torch.randn(B, H, Tk, 8), torch.randn(B, H, Tk, 5)
    expected, expected_w = _reference_attention(q, k, v, allowed, bias)
    scratch, w = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    fused = fused_scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(scratch, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, expected_w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    empty = ~allowed.expand(B, H, Tq, Tk).any(-1)
    assert (scratch[empty] == 0).all() and (fused[empty] == 0).all() and (w[empty] == 0).all()


@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_fully_masked_rows_give_finite_gradients(impl):
    q, k, v = (torch.randn(2, 4, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[0, 1] = False
    attend = scaled_dot_product_attention if impl == "scratch" else fused_scaled_dot_product_attention
    attend(q, k, v, mask).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[0, 1] == 0).all()  # the empty row's output is constant: no gradient reaches its query


@pytest.mark.parametrize("attend", [scaled_dot_product_attention, fused_scaled_dot_product_attention])
def test_both_paths_reject_the_same_masks(attend):
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match=r"mask must be boolean .* or floating point .* got dtype torch.int64"):
        attend(q, k, v, torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 5\) does not broadcast to the scores' shape \(2, 3, 5\)"):
        attend(q, k, v, torch.ones(4, 5, dtype=torch.bool))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite values and -inf, not NaN or \\+inf"):
            attend(q, k, v, torch.zeros(3, 5).fill_(bad))
    with pytest.raises(ValueError, match="q and k must share their last dimension"):
        attend(q, torch.randn(2, 5, 3), v)


@pytest.mark.parametrize("attn_impl", ["scratch", "fused"])
def test_multi_head_float_mask_equals_boolean_mask_with_causal(attn_impl):
    mha = MultiHeadAttention(16, 4, causal=True, attn_impl=attn_impl)
    x = torch.randn(2, 5, 16)
    keep = torch.rand(2, 1, 5, 5) > 0.3
    keep[1, 0, 3] = False  # a query with no key left: zero attention output, not NaN
    as_float = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    out_bool, out_float = mha(x, mask=keep), mha(x, mask=as_float)
    torch.testing.assert_close(out_float, out_bool)
    assert torch.isfinite(out_bool).all()
    ref = MultiHeadAttention(16, 4, causal=True, attn_impl="fused" if attn_impl == "scratch" else "scratch")
    ref.load_state_dict(mha.state_dict())
    torch.testing.assert_close(ref(x, mask=keep), out_bool, rtol=1e-5, atol=1e-5)
    # query 3 of sequence 1 sees no key: zero attention output, and o_proj has no bias
    assert (out_bool[1, 3] == 0).all() and (out_bool[0] != 0).any()


# ---------------------------------------------------------------- RoPE with per-sequence positions


def _rope_complex(x, positions, theta=10000.0):
    """RoPE as complex multiplication: pair j of x is x[2j] + i x[2j+1], times
    exp(i * p * theta^(-2j/d)). ``x (T, d)``, ``positions (T,)``."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double()[:, None] * freqs  # (T, d/2)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).reshape(x.shape).float()


def _rope_mha_reference(mha, x, positions):
    """Project, rotate each sequence's q and k by its own positions (one sequence and
    one head at a time), then F.scaled_dot_product_attention and the output projection."""
    B, T, D = x.shape
    H, Dh, Hkv = mha.n_heads, mha.d_head, mha.n_kv_heads
    q = mha.q_proj(x).view(B, T, H, Dh).transpose(1, 2)
    k = mha.k_proj(x).view(B, T, Hkv, Dh).transpose(1, 2)
    v = mha.v_proj(x).view(B, T, Hkv, Dh).transpose(1, 2)
    q = torch.stack([torch.stack([_rope_complex(q[b, h], positions[b]) for h in range(H)]) for b in range(B)])
    k = torch.stack([torch.stack([_rope_complex(k[b, h], positions[b]) for h in range(Hkv)]) for b in range(B)])
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hkv != H)
    return mha.o_proj(out.transpose(1, 2).reshape(B, T, D))


def _random_positions(B, T, max_len, seed):
    """Per sequence: T distinct positions drawn from 0..max_len-1, shuffled (neither
    contiguous nor sorted, different in every row), so relative distances differ."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(max_len, generator=g)[:T] for _ in range(B)])


@pytest.mark.parametrize("attn_impl", ["scratch", "fused"])
@pytest.mark.parametrize("B", [4, 3])  # B == H, and B != H
@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_rope_per_sequence_positions_match_reference(attn_impl, B, n_kv_heads):
    mha = MultiHeadAttention(32, 4, causal=True, rope=RotaryPositionalEmbedding(8, 64),
                             n_kv_heads=n_kv_heads, attn_impl=attn_impl)
    T = 6
    x = torch.randn(B, T, 32)
    positions = _random_positions(B, T, 64, seed=B)
    expected = _rope_mha_reference(mha, x, positions)
    torch.testing.assert_close(mha(x, token_positions=positions), expected, rtol=1e-4, atol=1e-5)
    # a non-contiguous view of the same positions gives the same answer
    wide = torch.zeros(B, 2 * T, dtype=torch.long)
    wide[:, ::2] = positions
    assert not wide[:, ::2].is_contiguous()
    torch.testing.assert_close(mha(x, token_positions=wide[:, ::2]), expected, rtol=1e-4, atol=1e-5)
    # shared positions: (T,) and (1, T) equal the reference with the row repeated
    shared = positions[0]
    expected_shared = _rope_mha_reference(mha, x, shared.expand(B, T))
    torch.testing.assert_close(mha(x, token_positions=shared), expected_shared, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mha(x, token_positions=shared[None]), expected_shared, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attn_impl", ["scratch", "fused"])
def test_rope_per_sequence_positions_through_the_kv_cache(attn_impl):
    mha = MultiHeadAttention(32, 4, causal=True, rope=RotaryPositionalEmbedding(8, 64), attn_impl=attn_impl)
    B, T = 3, 7
    x = torch.randn(B, T, 32)
    positions = _random_positions(B, T, 64, seed=7)
    full = _rope_mha_reference(mha, x, positions)
    cache = KVCache()
    parts = [mha(x[:, :4], token_positions=positions[:, :4], kv_cache=cache)]
    parts += [mha(x[:, t : t + 1], token_positions=positions[:, t : t + 1], kv_cache=cache) for t in range(4, T)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_bad_token_positions_are_clear_errors():
    mha = MultiHeadAttention(16, 4, rope=RotaryPositionalEmbedding(4, 32))
    x = torch.randn(3, 5, 16)
    shape_msg = r"token_positions must have shape \(T,\), \(1, T\) or \(B, T\) = \(5,\), \(1, 5\) or \(3, 5\)"
    for bad in (torch.arange(4), torch.zeros(4, 5, dtype=torch.long), torch.zeros(3, 6, dtype=torch.long),
                torch.zeros(3, 1, 5, dtype=torch.long), torch.tensor(2)):
        with pytest.raises(ValueError, match=shape_msg + rf".*got {re.escape(str(tuple(bad.shape)))}"):
            mha(x, token_positions=bad)
    with pytest.raises(TypeError, match="expects integer token_positions, got dtype torch.float32"):
        mha(x, token_positions=torch.arange(5.0))
    with pytest.raises(ValueError, match=r"position 32 is outside 0..31"):
        mha(x, token_positions=torch.arange(28, 33))
    with pytest.raises(TypeError, match="token_positions must be an integer tensor, got list"):
        mha(x, token_positions=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="only used to rotate queries and keys in RoPE self-attention; this attention has no rope"):
        MultiHeadAttention(16, 4)(x, token_positions=torch.arange(5))
    with pytest.raises(ValueError, match="this is cross-attention"):
        mha(x, context=torch.randn(3, 2, 16), token_positions=torch.arange(5))
