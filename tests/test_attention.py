import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformer.attention import KVCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention
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
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5))
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
