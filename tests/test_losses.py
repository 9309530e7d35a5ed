"""tinyformer.losses: cross_entropy from scratch against F.cross_entropy, and lm_loss's two impls."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinyformer.losses import cross_entropy, lm_loss


def test_cross_entropy_matches_torch():
    logits, targets = torch.randn(4, 7, 11), torch.randint(0, 11, (4, 7))
    torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits.view(-1, 11), targets.view(-1)))


def test_cross_entropy_is_stable_for_extreme_logits():
    logits, targets = torch.randn(16, 11) * 1000, torch.randint(0, 11, (16,))
    ours = cross_entropy(logits, targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets))


def test_cross_entropy_hand_value():
    # uniform over 4 classes: loss is log 4 whatever the target
    assert cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1, 3])).item() == pytest.approx(math.log(4))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="unknown target id 11: logits cover ids 0..10"):
        cross_entropy(torch.randn(2, 11), torch.tensor([1, 11]))
    with pytest.raises(ValueError, match="logits .* and targets .* disagree"):
        cross_entropy(torch.randn(2, 11), torch.tensor([1, 2, 3]))


def test_lm_loss_fused_equals_scratch():
    logits, targets = torch.randn(3, 5, 11, requires_grad=True), torch.randint(0, 11, (3, 5))
    torch.testing.assert_close(lm_loss(logits, targets, "fused"), lm_loss(logits, targets, "scratch"))
    with pytest.raises(ValueError, match="disagree"):
        lm_loss(logits, targets[:, :3], "fused")
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        lm_loss(logits, targets, "fast")
