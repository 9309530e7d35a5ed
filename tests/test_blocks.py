import pytest
import torch
from torch import nn

from tinyformer.attention import causal_mask
from tinyformer.blocks import TransformerBlock

from conftest import copy_linear, copy_mha_into_torch, copy_norm, randomize_


def original_block(d_model=16, n_heads=4, d_ff=32, norm_position="post", cross_attention=False, causal=False):
    return randomize_(
        TransformerBlock(
            d_model,
            n_heads,
            d_ff,
            causal=causal,
            cross_attention=cross_attention,
            norm="layer",
            norm_position=norm_position,
            ffn="relu",
            bias=True,
        ),
        scale=0.3,
    )


def load_encoder_layer(ours: TransformerBlock, ref: nn.TransformerEncoderLayer) -> None:
    copy_mha_into_torch(ours.self_attn, ref.self_attn)
    copy_linear(ours.ffn.w1, ref.linear1)
    copy_linear(ours.ffn.w2, ref.linear2)
    copy_norm(ours.norm1, ref.norm1)
    copy_norm(ours.norm2, ref.norm2)


def load_decoder_layer(ours: TransformerBlock, ref: nn.TransformerDecoderLayer) -> None:
    copy_mha_into_torch(ours.self_attn, ref.self_attn)
    copy_mha_into_torch(ours.cross_attn, ref.multihead_attn)
    copy_linear(ours.ffn.w1, ref.linear1)
    copy_linear(ours.ffn.w2, ref.linear2)
    copy_norm(ours.norm1, ref.norm1)
    copy_norm(ours.norm_cross, ref.norm2)
    copy_norm(ours.norm2, ref.norm3)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_encoder_block_matches_nn_transformer_encoder_layer(norm_position):
    ours = original_block(norm_position=norm_position)
    ref = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_position == "pre"
    ).eval()
    load_encoder_layer(ours, ref)
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_decoder_block_matches_nn_transformer_decoder_layer(norm_position):
    ours = original_block(norm_position=norm_position, cross_attention=True, causal=True)
    ref = nn.TransformerDecoderLayer(
        16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_position == "pre"
    ).eval()
    load_decoder_layer(ours, ref)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 8, 16)
    expected = ref(x, memory, tgt_mask=~causal_mask(5))  # torch: True = blocked
    torch.testing.assert_close(ours(x, memory), expected, rtol=1e-5, atol=1e-5)


def test_modern_block_is_pre_norm_residual():
    block = TransformerBlock(16, 4)
    x = torch.randn(2, 5, 16)
    h = x + block.self_attn(block.norm1(x))
    expected = h + block.ffn(block.norm2(h))
    torch.testing.assert_close(block(x), expected)


def test_block_returns_per_head_weights():
    block = original_block(cross_attention=True, causal=True)
    _, weights = block(torch.randn(2, 5, 16), torch.randn(2, 3, 16), return_weights=True)
    assert weights["self"].shape == (2, 4, 5, 5)
    assert weights["cross"].shape == (2, 4, 5, 3)
    assert (weights["self"][..., ~causal_mask(5)] == 0).all()


def test_block_memory_errors():
    with pytest.raises(ValueError, match="pass the encoder output as memory"):
        original_block(cross_attention=True)(torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="memory was passed to a block without cross-attention"):
        original_block()(torch.randn(1, 2, 16), torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="unknown norm_position 'middle'"):
        TransformerBlock(16, 4, norm_position="middle")
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        TransformerBlock(16, 4, norm="batch")


def test_block_impl_reaches_attention_and_refuses_a_contradiction():
    assert TransformerBlock(16, 4, impl="fused").self_attn.attn_impl == "fused"  # attention follows impl
    assert TransformerBlock(16, 4, attn_impl="fused").self_attn.attn_impl == "fused"  # attention alone
    block = TransformerBlock(16, 4, cross_attention=True, attn_impl="fused")
    assert block.cross_attn.attn_impl == "fused" and block.norm1.impl == "scratch"
    with pytest.raises(ValueError, match="impl='fused'.*attn_impl='scratch'"):
        TransformerBlock(16, 4, impl="fused", attn_impl="scratch")
    with pytest.raises(ValueError, match="unknown attn_impl 'flash'"):
        TransformerBlock(16, 4, attn_impl="flash")
