"""The playground's ONNX export (tinyformer/book/export.py) against the PyTorch model it came from.

A book-small-shaped model with its own random weights (so this runs in seconds, without the
trained run); tests/test_playground.py checks the build's export of the trained model itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinyformer.book.export import FORMAT, ModelWithAttention, export_onnx, export_playground, seed_prompt
from tinyformer.model import TransformerLM, preset
from tinyformer.data import Corpus
from tinyformer.tokenizer import CharTokenizer, load_tokenizer
from tinyformer.train import RunResult, TrainConfig

ort = pytest.importorskip("onnxruntime")

TEXT = "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\n" * 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_text(TEXT)
    model = TransformerLM(preset("book-small", vocab_size=tokenizer.vocab_size)).eval()
    tokens = np.asarray(tokenizer.encode(TEXT), dtype=np.int32)
    # An untrained run: no evaluation yet, so its final validation loss is NaN (written as null).
    run = RunResult(model=model, tokenizer=tokenizer, corpus=Corpus("text", TEXT, "this test", "public domain"),
                    train_tokens=tokens, val_tokens=tokens, log={"step": [], "lr": [], "train_loss": [], "val_step": [],
                                                                 "val_loss": []},
                    config=TrainConfig(), steps=0, seconds=0.0, tokens_per_second=float("nan"),
                    parameters=sum(p.numel() for p in model.parameters()))
    out = tmp_path_factory.mktemp("playground")
    meta = export_playground(run, out)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    return {"model": model, "tokenizer": tokenizer, "out": out, "meta": meta, "session": session}


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (1, 33), (1, 64), (2, 17)], ids=lambda s: f"B{s[0]}-T{s[1]}")
def test_onnx_logits_and_attention_match_pytorch_at_every_length(exported, shape):
    """The sequence (and batch) length is dynamic: the trace at 8 tokens must not have frozen it."""
    model, session = exported["model"], exported["session"]
    ids = torch.randint(0, model.config.vocab_size, shape, generator=torch.Generator().manual_seed(sum(shape)))
    outputs = session.run(None, {"token_ids": ids.numpy()})
    with torch.no_grad():
        logits, weights = model(ids, return_weights=True)
    assert [o.name for o in session.get_outputs()] == exported["meta"]["outputs"]
    assert len(outputs) == 1 + model.config.n_layers
    np.testing.assert_allclose(outputs[0], logits.numpy(), rtol=0, atol=1e-4)
    for layer, (got, want) in enumerate(zip(outputs[1:], weights)):
        assert got.shape == (shape[0], model.config.n_heads, shape[1], shape[1]), f"layer {layer}"
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-4, err_msg=f"attention of layer {layer}")
        # They are attention weights, not something else of that shape: causal rows summing to 1.
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
        assert np.abs(np.triu(got, k=1)).max() == 0


def test_onnx_weights_are_the_ones_the_model_uses(exported):
    """Independent of return_weights: layer 0's weights recomputed from its q/k projections and RoPE."""
    model, session = exported["model"], exported["session"]
    ids = torch.randint(0, model.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(5))
    got = session.run(["attention_0"], {"token_ids": ids.numpy()})[0]
    block = model.blocks[0]
    attn = block.self_attn
    assert block.norm_position == "pre"  # book-small: norm1 feeds attention
    with torch.no_grad():
        x = block.norm1(model.embed(ids))
        q, k = attn._split_heads(attn.q_proj(x), attn.n_heads), attn._split_heads(attn.k_proj(x), attn.n_kv_heads)
        pos = torch.arange(20)
        q, k = attn.rope(q, pos), attn.rope(k, pos)
        scores = (q @ k.transpose(-2, -1)) / attn.d_head ** 0.5
        scores = scores.masked_fill(torch.ones(20, 20, dtype=torch.bool).triu(1), float("-inf"))
        want = torch.softmax(scores, dim=-1)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)


def test_saved_graph_is_simplified_plain_onnx_with_symbolic_lengths(exported):
    """Constant-folded (the browser runs it ~5x faster than the raw trace), standard operators
    only (no runtime-specific fused ones), batch and length symbolic in every output."""
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(exported["out"] / "model.onnx").graph
    assert {node.domain for node in graph.node} == {""}
    assert not [node for node in graph.node if node.op_type == "Constant"]
    dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    config = exported["model"].config
    assert dims["logits"] == ["B", "T", config.vocab_size]
    assert all(dims[f"attention_{i}"] == ["B", config.n_heads, "T", "T"] for i in range(config.n_layers))


def test_vocabulary_and_metadata_beside_the_model(exported):
    out, meta, tokenizer = exported["out"], exported["meta"], exported["tokenizer"]
    assert load_tokenizer(out / "vocab.json").chars == tokenizer.chars
    assert json.loads((out / "model.json").read_text(encoding="utf-8")) == meta
    assert meta["format"] == FORMAT
    assert meta["model_bytes"] == (out / "model.onnx").stat().st_size
    assert meta["final_val_loss"] is None  # NaN is not JSON
    config = exported["model"].config
    assert (meta["vocab_size"], meta["context_length"], meta["n_layers"], meta["n_heads"]) == (
        config.vocab_size, config.context_length, config.n_layers, config.n_heads)
    assert meta["prompt"] == "And the earth was without form, and void."
    assert tokenizer.encode(meta["prompt"])  # every character is in the vocabulary


def test_seed_prompt_is_a_whole_line_that_fits():
    text = "cut mid-line\nshort\n" + "x" * 70 + "\nthis line of forty-one characters fits it\nlater line"
    assert seed_prompt(text, 64) == "this line of forty-one characters fits it"
    with pytest.raises(ValueError, match="no line of 40 to 64 characters"):
        seed_prompt("a\nb\nc", 64)


def test_fused_attention_cannot_be_exported_with_weights(tmp_path):
    model = TransformerLM(preset("book-small", vocab_size=10, attn_impl="fused"))
    with pytest.raises(ValueError, match="only attn_impl='scratch' materialises"):
        export_onnx(model, tmp_path / "m.onnx")


def test_wrapper_returns_logits_then_one_map_per_layer():
    model = TransformerLM(preset("book-small", vocab_size=10)).eval()
    ids = torch.randint(0, 10, (1, 5))
    out = ModelWithAttention(model)(ids)
    logits, weights = model(ids, return_weights=True)
    assert len(out) == 1 + model.config.n_layers
    assert torch.equal(out[0], logits) and all(torch.equal(a, b) for a, b in zip(out[1:], weights))
