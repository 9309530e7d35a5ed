import pytest
import torch
from torch import nn

from tinyformer.attention import causal_mask
from tinyformer.model import (
    ORIGINAL_ARCHITECTURE,
    PRESETS,
    Decoder,
    Encoder,
    EncoderDecoder,
    TransformerConfig,
    TransformerLM,
    count_parameters,
    parameter_breakdown,
    preset,
)

from conftest import randomize_
from test_blocks import load_decoder_layer, load_encoder_layer

SMALL = TransformerConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=4)


def test_lm_output_shape_and_weights():
    model = TransformerLM(SMALL)
    ids = torch.randint(0, 50, (3, 10))
    logits, weights = model(ids, return_weights=True)
    assert logits.shape == (3, 10, 50)
    assert len(weights) == 2 and weights[0].shape == (3, 4, 10, 10)


@pytest.mark.parametrize("positions", ["rope", "sinusoidal", "learned", "none"])
def test_lm_is_causal(positions):
    model = TransformerLM(SMALL.replace(positions=positions))
    ids = torch.randint(0, 50, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 50
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # earlier positions never see later tokens
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_lm_with_kv_cache_equals_full_forward():
    model = TransformerLM(SMALL.replace(n_kv_heads=2))
    ids = torch.randint(0, 50, (2, 10))
    caches = model.new_kv_caches()
    parts = [model(ids[:, :4], kv_caches=caches)] + [model(ids[:, t : t + 1], kv_caches=caches) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(parts, dim=1), model(ids), rtol=1e-5, atol=1e-5)


def test_lm_fused_equals_scratch():
    scratch = TransformerLM(SMALL)
    fused = TransformerLM(SMALL.replace(attn_impl="fused"))
    fused.load_state_dict(scratch.state_dict())
    ids = torch.randint(0, 50, (2, 16))
    torch.testing.assert_close(fused(ids), scratch(ids), rtol=1e-5, atol=1e-5)


def test_lm_rejects_too_long_and_unknown_ids():
    model = TransformerLM(SMALL)
    with pytest.raises(ValueError, match=r"length 17 is longer than the model's context_length \(16\)"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown token id 50"):
        model(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match=r"expected token ids of shape \(B, T\)"):
        model(torch.tensor([1, 2]))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        SMALL.replace(d_model=30)
    with pytest.raises(ValueError, match="unknown positions 'alibi'"):
        SMALL.replace(positions="alibi")
    with pytest.raises(ValueError, match="TransformerConfig.n_layers must be an integer >= 1, got 0"):
        SMALL.replace(n_layers=0)
    with pytest.raises(ValueError, match="unknown TransformerConfig fields: \\['colour'\\]"):
        TransformerConfig.from_dict({**SMALL.to_dict(), "colour": "red"})
    assert TransformerConfig.from_dict(SMALL.to_dict()) == SMALL


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(n_heads=4.0), r"n_heads must be an integer >= 1, got 4.0 \(float\)"),
        (dict(vocab_size=True), r"vocab_size must be an integer >= 1, got True \(bool\)"),
        (dict(context_length="16"), r"context_length must be an integer >= 1, got '16' \(str\)"),
        (dict(d_ff=0), r"d_ff must be an integer >= 1, got 0"),
        (dict(n_kv_heads=3), r"n_heads \(4\) must be divisible by n_kv_heads \(3\)"),
        (dict(rope_theta=float("nan")), r"rope_theta must be a finite number > 0, got nan"),
        (dict(norm_eps=-1e-5), r"norm_eps must be a finite number > 0"),
        (dict(bias="yes"), r"bias must be True or False, got 'yes'"),
        (dict(d_model=36, n_heads=4), r"d_head = d_model / n_heads must be even, got 36 / 4 = 9"),
    ],
)
def test_config_rejects_wrong_types_and_ranges(change, message):
    with pytest.raises((TypeError, ValueError), match=message):
        SMALL.replace(**change)


def test_forward_rejects_an_empty_sequence():
    with pytest.raises(ValueError, match=r"token ids of shape \(B, 0\): a sequence needs at least one token"):
        TransformerLM(SMALL)(torch.zeros(2, 0, dtype=torch.long))


def _count_by_formula(c: TransformerConfig) -> int:
    """Parameter count written out by hand, independently of the modules."""
    d, f, v, L = c.d_model, c.ffn_width, c.vocab_size, c.n_layers
    kv = (c.n_kv_heads or c.n_heads) * c.d_head
    attn = d * d + 2 * d * kv + d * d + ((d + 2 * kv + d) if c.bias else 0)
    if c.ffn == "swiglu":
        ffn = 3 * d * f
    else:
        ffn = 2 * d * f + ((f + d) if c.bias else 0)
    norm = d * (2 if c.norm == "layer" and c.bias else 1)
    per_layer = attn + ffn + 2 * norm
    embed = v * d + (c.context_length * d if c.positions == "learned" else 0)
    head = 0 if c.tie_embeddings else v * d
    final = norm if c.norm_position == "pre" else 0
    return L * per_layer + embed + head + final


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_counts_match_the_formula(name):
    config = preset(name)
    assert count_parameters(TransformerLM(config)) == _count_by_formula(config)


def test_base_25m_and_original_toy_presets_have_the_advertised_sizes():
    full = count_parameters(TransformerLM(preset("base-25m")))
    toy = count_parameters(TransformerLM(preset("original-toy")))
    assert full == 25_205_760  # 6 x 3,152,384 per layer + 2 x 6144 x 512 embeddings/head
    assert 240_000 <= toy <= 260_000
    walkthrough = preset("walkthrough")
    assert (walkthrough.context_length, walkthrough.d_model, walkthrough.n_heads, walkthrough.vocab_size) == (4, 8, 2, 20)


def test_tied_embeddings_share_one_tensor_and_count_once():
    untied = count_parameters(TransformerLM(SMALL))
    tied_model = TransformerLM(SMALL.replace(tie_embeddings=True))
    assert tied_model.lm_head.weight is tied_model.embed.token_embedding.weight
    assert count_parameters(tied_model) == untied - 50 * 32
    assert sum(parameter_breakdown(tied_model).values()) == count_parameters(tied_model)


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    assert preset("walkthrough", vocab_size=30).vocab_size == 30


def test_encoder_and_decoder_stacks_match_torch_stacks():
    config = TransformerConfig(vocab_size=30, context_length=12, d_model=16, n_layers=2, n_heads=4, d_ff=32, **ORIGINAL_ARCHITECTURE)
    model = randomize_(EncoderDecoder(config), scale=0.3)
    enc_layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    dec_layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    ref_enc = nn.TransformerEncoder(enc_layer, 2, enable_nested_tensor=False).eval()
    ref_dec = nn.TransformerDecoder(dec_layer, 2).eval()
    for ours, ref in zip(model.encoder.blocks, ref_enc.layers):
        load_encoder_layer(ours, ref)
    for ours, ref in zip(model.decoder.blocks, ref_dec.layers):
        load_decoder_layer(ours, ref)
    src, tgt = torch.randint(0, 30, (2, 9)), torch.randint(0, 30, (2, 6))
    memory = ref_enc(model.encoder.embed(src))
    torch.testing.assert_close(model.encoder(src), memory, rtol=1e-5, atol=1e-5)
    hidden = ref_dec(model.decoder.embed(tgt), memory, tgt_mask=~causal_mask(6))
    torch.testing.assert_close(model(src, tgt), model.decoder.lm_head(hidden), rtol=1e-5, atol=1e-5)


def test_encoder_decoder_weights_and_errors():
    config = preset("walkthrough")
    model = EncoderDecoder(config)
    logits, weights = model(torch.randint(0, 20, (2, 4)), torch.randint(0, 20, (2, 3)), return_weights=True)
    assert logits.shape == (2, 3, 20)
    assert weights["encoder"][0].shape == (2, 2, 4, 4)
    assert weights["decoder"][0]["cross"].shape == (2, 2, 3, 4)
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(torch.zeros(2, 4, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long))
    assert isinstance(Encoder(config), nn.Module) and isinstance(Decoder(config), nn.Module)


# --- one switch for the fused path; initialisation schemes -----------------------------------

import math  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from tinyformer.initialization import GPT2_STD, init_statistics, residual_projections  # noqa: E402

GPT2_STYLE = dict(positions="learned", norm="layer", norm_position="pre", ffn="gelu", bias=False)


@pytest.mark.parametrize("arch", [GPT2_STYLE, {}, dict(GPT2_STYLE, bias=True, tie_embeddings=True)],
                         ids=["gpt2-style", "modern", "gpt2-bias-tied"])
def test_lm_impl_fused_equals_scratch_outputs_and_gradients(arch):
    config = SMALL.replace(**arch)
    scratch = randomize_(TransformerLM(config), scale=0.2)
    fused = TransformerLM(config.replace(impl="fused"))
    fused.load_state_dict(scratch.state_dict())
    assert all(b.self_attn.attn_impl == "fused" for b in fused.blocks)  # the one switch reaches attention
    ids = torch.randint(0, 50, (3, 16))
    losses = []
    for model in (scratch, fused):
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(scratch.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_impl_and_init_are_validated():
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        SMALL.replace(impl="fast")
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        SMALL.replace(init="xavier")


def test_attn_impl_follows_impl_unless_set_and_a_contradiction_is_refused():
    assert SMALL.attn_impl == SMALL.impl == "scratch"  # resolved: the config says what runs
    assert SMALL.replace(impl="fused").attn_impl == "fused"
    assert SMALL.replace(attn_impl="fused").replace(impl="fused").attn_impl == "fused"
    attention_alone = SMALL.replace(attn_impl="fused")
    assert (attention_alone.attn_impl, attention_alone.impl) == ("fused", "scratch")
    assert attention_alone.replace(impl="scratch") == attention_alone  # set to differ: kept
    assert SMALL.replace(impl="fused").replace(impl="scratch") == SMALL
    assert TransformerConfig.from_dict(SMALL.replace(impl="fused").to_dict()) == SMALL.replace(impl="fused")
    with pytest.raises(ValueError, match="impl='fused'.*attn_impl='scratch'"):
        SMALL.replace(impl="fused", attn_impl="scratch")
    with pytest.raises(ValueError, match="impl='fused'.*attn_impl='scratch'"):
        TransformerConfig.from_dict({**SMALL.to_dict(), "impl": "fused"})  # attn_impl='scratch' written out
    with pytest.raises(ValueError, match="unknown attn_impl 'flash'"):
        SMALL.replace(attn_impl="flash")


def test_default_init_is_unchanged_for_untied_models():
    torch.manual_seed(3)
    a = TransformerLM(SMALL)
    torch.manual_seed(3)
    b = TransformerLM(SMALL.replace(init="default"))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert 0.9 < a.embed.token_embedding.weight.std().item() < 1.1  # a unit-normal input table


def test_gpt2_init_stds():
    config = SMALL.replace(init="gpt2", n_layers=8, **GPT2_STYLE)
    model = TransformerLM(config)
    projections = residual_projections(model)
    assert len(projections) == 2 * 8
    ids = {id(p.weight) for p in projections}
    for name, p in model.named_parameters():
        if p.dim() == 2 and id(p) not in ids:
            assert abs(p.std().item() - GPT2_STD) < 0.15 * GPT2_STD, name
    residual = torch.cat([p.weight.flatten() for p in projections])
    assert abs(residual.std().item() - GPT2_STD / math.sqrt(16)) < 0.05 * GPT2_STD / math.sqrt(16)
    for block in model.blocks:
        assert torch.equal(block.norm1.weight, torch.ones(32))


@pytest.mark.parametrize("init", ["default", "gpt2"])
def test_tied_head_starts_near_uniform(init):
    """The tied matrix must work as a head: first loss near ln V, not ~sqrt(D)-scaled logits."""
    config = TransformerConfig(vocab_size=65, context_length=32, d_model=128, n_layers=2, n_heads=4,
                               tie_embeddings=True, init=init, **GPT2_STYLE)
    stats = init_statistics(TransformerLM(config), torch.randint(0, 65, (8, 33)))
    assert stats["ln_vocab"] == pytest.approx(math.log(65))
    assert stats["initial_loss"] < stats["ln_vocab"] + (0.1 if init == "gpt2" else 1.0)
    assert stats["logit_std"] < 1.5
    assert len(stats["residual_rms"]) == 3  # after the embedding and after each block


def test_gpt2_init_keeps_the_residual_stream_scale_over_depth():
    config = TransformerConfig(vocab_size=65, context_length=32, d_model=128, n_layers=8, n_heads=4,
                               init="gpt2", **GPT2_STYLE)
    rms = init_statistics(TransformerLM(config), torch.randint(0, 65, (8, 33)))["residual_rms"]
    assert rms[-1] < 3 * rms[0]  # 8 layers add only about as much as one unscaled branch
