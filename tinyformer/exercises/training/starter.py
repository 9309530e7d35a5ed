"""Your turn, chapter "Training": the loss, the shifted targets, and one AdamW step.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter training
"""

import math

import torch


def cross_entropy(logits, targets):
    """Mean of -log softmax(logits)[target]: logits (..., V), integer targets (...) -> scalar tensor.

    It must stay finite for logits of 1e4 (where exp() overflows).
    """
    raise NotImplementedError


def next_token_loss(logits, token_ids):
    """The language-model loss: position t's logits are the prediction of token t + 1.

    logits (B, T, V), from the model run on token_ids (B, T)  ->  scalar tensor, the mean
    cross-entropy over the B * (T - 1) positions that have a next token.
    """
    raise NotImplementedError


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW update; return the new tensors (param, exp_avg, exp_avg_sq).

    All tensors have the parameter's shape; exp_avg and exp_avg_sq (Adam's m and v) start
    at zeros, and ``step`` is 1 for the first update, 2 for the second, ...
    Weight decay is *decoupled* (Loshchilov & Hutter): it shrinks the parameter directly.
    """
    raise NotImplementedError
