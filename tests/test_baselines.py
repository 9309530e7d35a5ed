"""tinyformer.book.baselines: the counting baselines the training chapter compares against."""

import numpy as np
import pytest

from tinyformer.book.baselines import ngram_baselines


def test_ngram_baselines_hand_computed():
    # train "abab...": after a always b, after b always a. alpha -> 0 makes the bigram exact.
    train_tokens = np.array([0, 1] * 50)
    val_tokens = np.array([0, 1, 0, 1])
    result = ngram_baselines(train_tokens, val_tokens, vocab_size=2, alpha=1e-9)
    assert result["unigram"] == pytest.approx(np.log(2), abs=1e-6)
    assert result["bigram"] == pytest.approx(0.0, abs=1e-6)
