"""BERT-style masked language modelling: the 80/10/10 rule, the loss, bidirectionality."""

import pytest
import torch
import torch.nn.functional as F

from tinyformer import TransformerConfig, TransformerLM
from tinyformer.mlm import IGNORE_INDEX, MaskedLM, bert_mask, masked_lm_loss

TINY = TransformerConfig(vocab_size=16, context_length=16, d_model=16, n_layers=1, n_heads=2, d_ff=32)


def test_masking_proportions_over_many_draws():
    g = torch.Generator().manual_seed(0)
    n_random, mask_id = 1000, 1000  # many ids, so a random draw rarely repeats the original
    tokens = torch.randint(0, n_random, (400, 250), generator=g)  # 100k positions
    inputs, targets = bert_mask(tokens, mask_id, n_random, generator=g)
    chosen = targets != IGNORE_INDEX
    n = chosen.sum().item()
    assert abs(n / tokens.numel() - 0.15) < 0.005
    masked = (chosen & (inputs == mask_id)).sum().item() / n
    kept = (chosen & (inputs == tokens)).sum().item() / n
    randomised = (chosen & (inputs != mask_id) & (inputs != tokens)).sum().item() / n
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(randomised - 0.1) < 0.01
    assert inputs[chosen & (inputs != mask_id)].max() < n_random  # random ids are real tokens, never [MASK]


def test_unchosen_positions_are_ignored_and_unchanged():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50, (64, 32), generator=g)
    inputs, targets = bert_mask(tokens, 50, 50, generator=g)
    chosen = targets != IGNORE_INDEX
    assert torch.equal(inputs[~chosen], tokens[~chosen])
    assert torch.equal(targets[chosen], tokens[chosen])
    assert (targets[~chosen] == IGNORE_INDEX).all() and chosen.any() and (~chosen).any()


def test_masking_is_seeded():
    tokens = torch.arange(1000).remainder(30)
    a = bert_mask(tokens, 30, 30, generator=torch.Generator().manual_seed(5))
    b = bert_mask(tokens, 30, 30, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_loss_equals_torch_cross_entropy_with_ignore_index():
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 20, (8, 16), generator=g)
    _, targets = bert_mask(tokens, 20, 20, generator=g)
    logits = torch.randn(8, 16, 21, generator=g)
    expected = F.cross_entropy(logits.reshape(-1, 21), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(masked_lm_loss(logits, targets), expected)
    with pytest.raises(ValueError, match="no position was chosen"):
        masked_lm_loss(logits, torch.full_like(targets, IGNORE_INDEX))


def test_bad_masking_arguments_are_named():
    tokens = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="mask_prob"):
        bert_mask(tokens, 1, 1, mask_prob=0.0)
    with pytest.raises(ValueError, match="replace_probs"):
        bert_mask(tokens, 1, 1, replace_probs=(0.8, 0.1, 0.2))
    with pytest.raises(TypeError, match="integer"):
        bert_mask(tokens.float(), 1, 1)


def test_encoder_is_bidirectional_and_causal_baseline_is_not():
    torch.manual_seed(0)
    mlm, causal = MaskedLM(TINY).eval(), TransformerLM(TINY).eval()
    ids = torch.randint(0, 16, (1, 10))
    changed = ids.clone()
    changed[0, 7] = (changed[0, 7] + 1) % 16  # change a later token
    with torch.no_grad():
        assert not torch.allclose(mlm(ids)[0, :7], mlm(changed)[0, :7])  # earlier positions see it
        torch.testing.assert_close(causal(ids)[0, :7], causal(changed)[0, :7])  # they cannot
