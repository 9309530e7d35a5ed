"""Diagrams drawn from the modules: recorded shapes equal the real tensors', and a config change changes them."""

import io

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from tinyformer import EncoderDecoder, TransformerConfig, TransformerLM, preset
from tinyformer.book import diagrams as d
from tinyformer.book.walkthrough import walkthrough

matplotlib.use("Agg")

MODERN = TransformerConfig(vocab_size=30, context_length=16, d_model=24, n_layers=3, n_heads=3, d_ff=40)
CONFIGS = {"walkthrough": preset("walkthrough"), "modern": MODERN}


def _model_and_ids(name, B=2, T=4):
    torch.manual_seed(0)
    config = CONFIGS[name]
    return TransformerLM(config), torch.randint(0, config.vocab_size, (B, T))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _edge_shapes(flow):
    return {(e.src, e.dst): e.shape for e in flow.edges}


@pytest.mark.parametrize("name", ["walkthrough", "modern"])
def test_block_shapes_are_the_real_tensors(name):
    model, ids = _model_and_ids(name, B=2, T=5 if name == "modern" else 4)
    B, T = ids.shape
    D, F = model.config.d_model, model.config.ffn_width
    block = model.blocks[0]
    x = model.embed(ids)
    shapes = _edge_shapes(d.block_flow(model, ids))
    with torch.no_grad():
        attn_out = block.self_attn(block.norm1(x) if block.norm_position == "pre" else x)
        hidden = block.ffn.w1(x)
    assert attn_out.shape == (B, T, D) and hidden.shape == (B, T, F)
    first = ("norm1", "self_attn") if block.norm_position == "pre" else ("x", "self_attn")
    assert shapes[first] == tuple(x.shape)
    assert shapes[("self_attn", "add_self_attn")] == tuple(attn_out.shape)
    assert all(s == (B, T, D) for s in shapes.values())


@pytest.mark.parametrize("name", ["walkthrough", "modern"])
def test_attention_shapes_are_the_real_tensors(name):
    model, ids = _model_and_ids(name)
    B, T = ids.shape
    c = model.config
    _, weights = model(ids, return_weights=True)
    qkv = _edge_shapes(d.qkv_flow(model, ids))
    assert qkv[("scores", "softmax")] == tuple(weights[0].shape) == (B, c.n_heads, T, T)
    assert qkv[("W_Q", "scores")] == (B, T, c.d_model)
    heads = d.heads_flow(model, ids)
    assert _edge_shapes(heads)[("split", "head0")] == (B, T, c.d_head)
    assert len([n for row in heads.rows for n in row if n.part == "heads"]) == min(c.n_heads, 3)


def test_lm_shapes_are_the_real_tensors():
    model, ids = _model_and_ids("modern", T=6)
    shapes = _edge_shapes(d.lm_flow(model, ids))
    assert shapes[("lm_head", "logits")] == tuple(model(ids).shape) == (2, 6, 30)
    assert shapes[("ids", "embedding")] == (2, 6)
    assert ("blocks", "final_norm") in shapes  # pre-norm: a final norm
    post = _edge_shapes(d.lm_flow(*_model_and_ids("walkthrough")))
    assert ("blocks", "lm_head") in post and not any("final_norm" in k for k in post)


def test_encoder_decoder_shapes_are_the_real_tensors():
    torch.manual_seed(0)
    model = EncoderDecoder(MODERN)
    src, tgt = torch.randint(0, 30, (2, 7)), torch.randint(0, 30, (2, 5))
    flow = d.encoder_decoder_flow(model, src, tgt)
    shapes = _edge_shapes(flow)
    assert shapes[("encoder", "memory")] == tuple(model.encoder(src).shape) == (2, 7, 24)
    assert shapes[("memory", "cross_attn")] == (2, 7, 24)
    assert shapes[("lm_head", "logits")] == tuple(model(src, tgt).shape)
    assert flow.sizes["S"] == 7 and flow.sizes["T"] == 5


def test_changing_the_config_changes_labels_and_alt_text():
    _, post = d.block_diagram()
    _, pre = d.block_diagram(norm_position="pre")
    assert "post-norm" in post and "pre-norm" in pre and pre != post
    # post-norm: attention reads x directly; pre-norm: it reads the LayerNorm's output
    assert "block input x passes" in post and "to Multi-head self-attention" in post.split("LayerNorm")[0]
    assert "block input x passes a tensor of shape (B, T, D) = (1, 4, 8) to LayerNorm." in pre
    model, ids = _model_and_ids("modern")
    _, modern = d.block_diagram(model, ids)
    assert "RMSNorm" in modern and "SwiGLU" in modern and "RoPE" in modern and "H = 3" in modern
    assert "(B, T, D) = (2, 4, 24)" in modern
    wide, ids2 = TransformerLM(MODERN.replace(n_heads=6)), ids
    assert "H = 6" in d.heads_diagram(wide, ids2)[1] and "(1, 4, 8)" in d.heads_diagram()[1]
    four = d.heads_flow(wide, ids2)
    assert [n.title for n in four.rows[3]] == ["head 0", "head 1", "… head 5"]


def test_a_label_that_disagrees_with_the_recorded_shape_raises():
    with pytest.raises(ValueError, match="does not match the recorded shape"):
        d._edge("a", "b", ("B", "T", "D"), (1, 4, 9), {"B": 1, "T": 4, "D": 8})


def test_trace_records_calls_in_the_order_the_code_ran():
    model, ids = _model_and_ids("walkthrough")
    calls = d.trace(model, ids)
    order = [c.name for cs in calls.values() for c in cs]
    order.sort(key=lambda n: calls[n][0].index)
    post = [n for n in order if n.startswith("blocks.0.") and n.count(".") == 2]
    assert post == ["blocks.0.self_attn", "blocks.0.norm1", "blocks.0.ffn", "blocks.0.norm2"]


def test_highlight_and_its_errors():
    fig, alt = d.lm_diagram(highlight="lm_head")
    assert alt.endswith("Highlighted: LM head (Linear) (D → V).")
    with pytest.raises(ValueError, match="choose from"):
        d.block_diagram(highlight="nope")
    with pytest.raises(TypeError, match="TransformerLM"):
        d.lm_flow(EncoderDecoder(preset("walkthrough")), torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.parametrize("make", [
    lambda: d.block_diagram(highlight="attention"),
    lambda: d.block_diagram(norm_position="pre", highlight="residual"),
    lambda: d.lm_diagram(highlight="blocks"),
    lambda: d.qkv_diagram(highlight="scores"),
    lambda: d.heads_diagram(highlight="heads"),
    lambda: d.encoder_decoder_diagram(highlight="cross_attention"),
])
def test_renders_to_png_legible_at_390_px(make):
    fig, alt = make()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert d.min_font_px(fig, 390) >= 12  # 9 pt on a phone
    assert fig.get_figwidth() == d.FIG_WIDTH and len(alt) > 200
    # the highlighted part is tinted: exactly the patches of that part carry the highlight colour
    lit = [p for p in fig.axes[0].patches if matplotlib.colors.to_hex(p.get_facecolor()) == d.HIGHLIGHT_FILL]
    assert lit


def test_default_diagrams_use_the_walkthrough_model():
    w = walkthrough()
    flow = d.block_flow()
    assert flow.sizes == {"B": 1, "T": 4, "D": 8, "H": 2, "d_head": 4, "F": 16, "V": 20}
    assert d.qkv_flow(w.model, w.token_ids).edges[0].shape == (1, 4, 8)
