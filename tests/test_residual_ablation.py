import pytest
import torch

import tinyformer as tf
from tinyformer.book.residual_ablation import AblationLM, block_forward, layer_grad_norms
from tinyformer.model import preset

CONFIG = preset("book-small", vocab_size=20, context_length=8, d_model=16, n_layers=3, n_heads=2, d_ff=None)


def test_block_with_residuals_is_the_library_block():
    torch.manual_seed(0)
    block = tf.TransformerBlock(16, 2, 32)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(block_forward(block, x, residual=True), block(x), atol=1e-6)


def test_block_without_residuals_is_the_plain_composition():
    torch.manual_seed(0)
    block = tf.TransformerBlock(16, 2, 32)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        plain = block.ffn(block.norm2(block.self_attn(block.norm1(x))))
        out = block_forward(block, x, residual=False)
        assert torch.allclose(out, plain, atol=1e-6)
        assert not torch.allclose(out, block(x), atol=1e-3)  # the residual was really dropped


def test_ablation_lm_with_residuals_equals_transformer_lm_on_the_same_weights():
    ids = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(3)
    with_res = AblationLM(CONFIG, residual=True)
    torch.manual_seed(3)
    without = AblationLM(CONFIG, residual=False)
    reference = tf.TransformerLM(CONFIG)
    reference.load_state_dict(with_res.lm.state_dict())
    with torch.no_grad():
        assert torch.allclose(with_res(ids), reference(ids), atol=1e-5)
        # same seed, same weights: the two variants differ only in the forward pass
        assert all(torch.equal(p, q) for p, q in zip(with_res.parameters(), without.parameters()))
        assert not torch.allclose(without(ids), reference(ids), atol=1e-3)


def test_layer_grad_norms_one_per_block():
    torch.manual_seed(0)
    model = AblationLM(CONFIG, residual=False)
    ids = torch.randint(0, 20, (2, 8))
    with pytest.raises(ValueError, match="backward"):
        layer_grad_norms(model)
    tf.cross_entropy(model(ids), ids).backward()
    norms = layer_grad_norms(model)
    expected = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm() for b in model.lm.blocks]
    assert torch.allclose(norms, torch.stack(expected))


def test_refuses_post_norm():
    with pytest.raises(ValueError, match="pre-norm"):
        AblationLM(CONFIG.replace(norm_position="post"), residual=False)
    with pytest.raises(ValueError, match="pre-norm"):
        block_forward(tf.TransformerBlock(16, 2, 32, norm_position="post"), torch.zeros(1, 2, 16))


def test_demo_loop_shows_each_steps_gradients_before_clipping():
    from tinyformer.book.demo_training import train_steps

    torch.manual_seed(0)
    model = AblationLM(CONFIG, residual=True)
    ids = torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(0))
    seen = []
    train_steps(model, lambda step: ((ids,), ids), tf.cross_entropy, 3, 1e-3, betas=(0.9, 0.95), weight_decay=0.0,
                desc="test", after_backward=lambda step: seen.append((step, layer_grad_norms(model).norm().item())))
    assert [s for s, _ in seen] == [0, 1, 2]
    assert seen[0][1] > 1.0  # unclipped: the first gradient of a fresh model is larger than the clip at 1.0
