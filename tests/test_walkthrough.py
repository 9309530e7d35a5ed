"""The running example: every step checked against PyTorch's own modules with the same weights."""

import hashlib
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformer import TransformerConfig, preset
from tinyformer.attention import causal_mask
from tinyformer.book import walkthrough as wt_module
from tinyformer.book.walkthrough import KJV_TOP20_CHARS, format_tensor, walkthrough

from conftest import copy_linear, copy_mha_into_torch, copy_norm

ROOT = Path(__file__).resolve().parents[1]
MODERN = TransformerConfig(vocab_size=20, context_length=4, d_model=8, n_layers=1, n_heads=2, d_ff=16)


@pytest.fixture(scope="module")
def w():
    return walkthrough()


def test_preset_is_seed_004(w):
    c = w.config
    assert (c.context_length, c.d_model, c.n_heads, c.d_ff, c.vocab_size) == (4, 8, 2, 16, 20)
    assert (c.norm, c.norm_position, c.ffn) == ("layer", "post", "relu")
    assert w.text == "lord" and w.tokens == ["l", "o", "r", "d"]
    assert w.logits.shape == (4, 20) and w["block0.weights"].shape == (2, 4, 4)


def test_seed_004_steps_exist_in_order(w):
    seed_004 = ["token_ids", "token_embeddings", "position_encoding", "x0", "block0.q", "block0.k", "block0.v",
                "block0.q_heads", "block0.scores", "block0.mask", "block0.masked_scores", "block0.weights",
                "block0.head_outputs", "block0.concat", "block0.attn_out", "block0.residual1", "block0.norm1",
                "block0.ffn_pre_activation", "block0.ffn_hidden", "block0.ffn_out", "block0.residual2",
                "block0.norm2", "logits", "probs", "predictions"]
    names = list(w)
    assert [n for n in names if n in seed_004] == seed_004
    assert "final_norm" not in names  # post-norm: the blocks end in a norm already


def test_same_values_on_every_call_and_global_rng_untouched(w):
    state = torch.get_rng_state()
    again = walkthrough()
    assert torch.equal(state, torch.get_rng_state())
    assert list(again) == list(w)
    for name in w:
        assert torch.equal(w[name], again[name]), name


def _digest(walk) -> str:
    h = hashlib.sha256()
    for name in walk:
        h.update(name.encode())
        h.update(walk[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def test_same_values_in_a_fresh_process(w):
    code = ("import hashlib; from tinyformer.book.walkthrough import walkthrough; w = walkthrough(); h = hashlib.sha256()\n"
            "for n in w: h.update(n.encode()); h.update(w[n].contiguous().numpy().tobytes())\n"
            "print(h.hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(w)


def test_other_seed_gives_other_weights(w):
    assert not torch.equal(walkthrough(seed=1).logits, w.logits)


def test_attention_matches_nn_multihead_attention(w):
    attn = w.model.blocks[0].self_attn
    ref = nn.MultiheadAttention(8, 2, bias=True, batch_first=True).eval()
    copy_mha_into_torch(attn, ref)
    x0 = w.x0[None]  # post-norm: attention reads the block input itself
    out, weights = ref(x0, x0, x0, attn_mask=~causal_mask(4), need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(w["block0.weights"], weights[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w["block0.attn_out"], out[0].detach(), rtol=1e-5, atol=1e-6)


def test_block_matches_nn_transformer_encoder_layer(w):
    block = w.model.blocks[0]
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="relu", batch_first=True,
                                     norm_first=False).eval()
    copy_mha_into_torch(block.self_attn, ref.self_attn)
    copy_linear(block.ffn.w1, ref.linear1)
    copy_linear(block.ffn.w2, ref.linear2)
    copy_norm(block.norm1, ref.norm1)
    copy_norm(block.norm2, ref.norm2)
    x0 = w.x0[None]
    mask = ~causal_mask(4)  # torch: True = blocked
    with torch.no_grad():
        torch.testing.assert_close(w["block0.norm2"], ref(x0, src_mask=mask)[0], rtol=1e-5, atol=1e-5)
        sa = ref.self_attn(x0, x0, x0, attn_mask=mask, need_weights=False)[0]
        torch.testing.assert_close(w["block0.norm1"], ref.norm1(x0 + sa)[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(w["block0.ffn_hidden"], F.relu(ref.linear1(w["block0.norm1"])), rtol=1e-5,
                                   atol=1e-6)


def test_each_step_against_torch_functions(w):
    block, model = w.model.blocks[0], w.model
    b = w.block(0)
    emb = F.embedding(w.token_ids, model.embed.token_embedding.weight)
    torch.testing.assert_close(w.token_embeddings, emb.detach())
    # The sinusoidal table of Vaswani et al., from its formula.
    pos, i = torch.arange(4.0)[:, None], torch.arange(0, 8, 2)
    angles = pos / 10000 ** (i / 8)
    torch.testing.assert_close(w.position_encoding, torch.stack([angles.sin(), angles.cos()], -1).reshape(4, 8))
    q = F.linear(w.x0, block.self_attn.q_proj.weight, block.self_attn.q_proj.bias).detach()
    torch.testing.assert_close(b.q, q)
    torch.testing.assert_close(b.q_heads, q.view(4, 2, 4).transpose(0, 1))
    torch.testing.assert_close(b.scores, b.q_heads @ b.k_heads.transpose(-1, -2) / math.sqrt(4))
    assert torch.isinf(b.masked_scores[:, 0, 1:]).all() and not torch.isinf(b.masked_scores[:, -1]).any()
    torch.testing.assert_close(b.weights, F.softmax(b.masked_scores, dim=-1))
    torch.testing.assert_close(b.weights.sum(-1), torch.ones(2, 4))
    assert (b.weights.triu(1) == 0).all()  # nothing from the future
    torch.testing.assert_close(b.head_outputs, b.weights @ b.v_heads)
    torch.testing.assert_close(b.concat, torch.cat(list(b.head_outputs), dim=-1))
    torch.testing.assert_close(b.residual1, w.x0 + b.attn_out)
    ln1, ln2 = block.norm1, block.norm2
    torch.testing.assert_close(b.norm1, F.layer_norm(b.residual1, (8,), ln1.weight, ln1.bias, 1e-5).detach())
    torch.testing.assert_close(b.ffn_hidden, F.relu(b.ffn_pre_activation))
    torch.testing.assert_close(b.residual2, b.norm1 + b.ffn_out)
    torch.testing.assert_close(b.norm2, F.layer_norm(b.residual2, (8,), ln2.weight, ln2.bias, 1e-5).detach())
    logits = F.linear(b.norm2, model.lm_head.weight).detach()
    torch.testing.assert_close(w.logits, logits)
    torch.testing.assert_close(w.probs, F.softmax(logits, dim=-1))
    assert torch.equal(w.predictions, torch.argmax(logits, dim=-1))
    with torch.no_grad():
        assert w.next_token == int(model(w.token_ids[None])[0, -1].argmax())
    assert w.next_char == w.tokenizer.decode([w.next_token])


def test_modern_preset_against_rms_norm_swiglu_and_complex_rope():
    w = walkthrough(config=MODERN)
    block, b = w.model.blocks[0], w.block(0)
    assert "position_encoding" not in w and "final_norm" in w
    torch.testing.assert_close(b.norm1, F.rms_norm(w.x0, (8,), block.norm1.weight, 1e-5).detach())
    # RoPE as complex multiplication: pair (x[2k], x[2k+1]) is x[2k] + i x[2k+1], turned by p * theta_k.
    theta = 10000.0 ** (-torch.arange(0, 4, 2) / 4)
    turn = torch.polar(torch.ones(4, 2), torch.arange(4.0)[:, None] * theta)  # (T, d_head / 2)
    for raw, rotated in (("q_heads", "q_rotated"), ("k_heads", "k_rotated")):
        z = torch.view_as_complex(b[raw].reshape(2, 4, 2, 2).contiguous())
        torch.testing.assert_close(b[rotated], torch.view_as_real(z * turn).reshape(2, 4, 4))
    out = F.scaled_dot_product_attention(b.q_rotated, b.k_rotated, b.v_heads, is_causal=True)
    torch.testing.assert_close(b.head_outputs, out, rtol=1e-5, atol=1e-6)
    ffn = block.ffn
    hidden = F.silu(F.linear(b.norm2, ffn.w1.weight)) * F.linear(b.norm2, ffn.w3.weight)
    torch.testing.assert_close(b.ffn_hidden, hidden.detach())
    torch.testing.assert_close(b.ffn_out, F.linear(hidden, ffn.w2.weight).detach())
    torch.testing.assert_close(w.final_norm, F.rms_norm(b.residual2, (8,), w.model.final_norm.weight, 1e-5).detach())
    torch.testing.assert_close(w.probs, F.softmax(F.linear(w.final_norm, w.model.lm_head.weight), -1).detach())


def test_pre_norm_gelu_block_matches_nn_transformer_encoder_layer():
    config = preset("walkthrough", norm_position="pre", ffn="gelu")
    w = walkthrough(config=config)
    block = w.model.blocks[0]
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True).eval()
    copy_mha_into_torch(block.self_attn, ref.self_attn)
    copy_linear(block.ffn.w1, ref.linear1)
    copy_linear(block.ffn.w2, ref.linear2)
    copy_norm(block.norm1, ref.norm1)
    copy_norm(block.norm2, ref.norm2)
    with torch.no_grad():
        expected = ref(w.x0[None], src_mask=~causal_mask(4))[0]
    torch.testing.assert_close(w["block0.residual2"], expected, rtol=1e-5, atol=1e-5)
    assert list(w).index("block0.norm1") < list(w).index("block0.q")  # pre-norm: norm first


def test_grouped_query_attention_and_two_layers():
    w = walkthrough(config=MODERN.replace(n_layers=2, n_kv_heads=1))
    assert w["block1.k_heads"].shape == (1, 4, 4) and w["block1.weights"].shape == (2, 4, 4)


def test_the_internal_check_catches_drift(monkeypatch):
    monkeypatch.setattr(wt_module, "softmax", lambda x, dim=-1: F.softmax(2 * x, dim=dim))
    with pytest.raises(RuntimeError, match="block0.weights"):
        walkthrough()


def test_kjv_top20_is_the_corpus_count():
    from tinyformer.data import load_kjv

    counts = Counter(load_kjv().text.lower())
    assert "".join(c for c, _ in counts.most_common(20)) == KJV_TOP20_CHARS


def test_bad_input_is_a_clear_error(w):
    with pytest.raises(ValueError, match="characters not in"):
        walkthrough("lamb")  # 'b' is not among the 20
    with pytest.raises(ValueError, match="context_length=4"):
        walkthrough("lords")
    with pytest.raises(ValueError, match="attn_impl"):
        walkthrough(config=preset("walkthrough", attn_impl="fused"))
    with pytest.raises(KeyError, match="the steps are"):
        w["block0.nope"]
    with pytest.raises(AttributeError, match="block has no step"):
        w.block(0).nope
    with pytest.raises(IndexError, match="blocks 0..0"):
        w.block(1)
    assert walkthrough(token_ids=[1, 2, 3]).logits.shape == (3, 20)


def test_show_is_small_and_readable(w, capsys):
    text = w.format("block0.masked_scores", decimals=2)
    assert "(H, T, T) = (2, 4, 4)" in text and "-inf" in text and "grad_fn" not in text and "tensor" not in text
    assert format_tensor(torch.tensor([[0.123456, -0.0001]]), 3) == "[[0.123 0.000]]"
    assert format_tensor(torch.tensor([True, False])) == "[1 0]"
    w.show("token_ids", "logits")
    out = capsys.readouterr().out
    assert "token_ids  (T,) = (4,)" in out and "logits  (T, V) = (4, 20)" in out
    assert len(w.summary().splitlines()) == len(w)
