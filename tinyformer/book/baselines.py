"""Counting baselines for the training chapter: what a model that only counts tokens achieves.

A Transformer that cannot beat counting pairs has learned nothing about context.
"""

from __future__ import annotations

import numpy as np
import torch

from ..losses import cross_entropy

__all__ = ["ngram_baselines"]


def ngram_baselines(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int, alpha: float = 0.1) -> dict:
    """Validation cross-entropy (nats/token) of add-alpha unigram and bigram models:
    ``{"unigram": ..., "bigram": ...}``."""
    train_t = torch.as_tensor(train_tokens.astype(np.int64))
    val_t = torch.as_tensor(val_tokens.astype(np.int64))
    unigram = torch.bincount(train_t, minlength=vocab_size).double() + alpha
    unigram_logp = (unigram / unigram.sum()).log()
    pairs = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    pairs.index_put_((train_t[:-1], train_t[1:]), torch.ones(len(train_t) - 1, dtype=torch.float64), accumulate=True)
    bigram_logp = ((pairs + alpha) / (pairs + alpha).sum(dim=1, keepdim=True)).log()
    return {
        "unigram": cross_entropy(unigram_logp.expand(len(val_t), -1), val_t).item(),
        "bigram": cross_entropy(bigram_logp[val_t[:-1]], val_t[1:]).item(),
    }
