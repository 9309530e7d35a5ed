"""Chapter "Training": the loss, the shifted targets, and one AdamW step."""

import math

import torch


def cross_entropy(logits, targets):
    """Mean of -log softmax(logits)[target]: logits (..., V), integer targets (...) -> scalar.

    log softmax(x)_y = x_y - logsumexp(x), and logsumexp(x) = m + log(sum(exp(x - m)))
    with m = max(x): the shift keeps exp() finite even for logits of 1e4.
    """
    m = logits.amax(dim=-1, keepdim=True)  # (..., 1)
    logsumexp = m.squeeze(-1) + torch.log(torch.exp(logits - m).sum(dim=-1))  # (...)
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...)
    return (logsumexp - target_logit).mean()


def next_token_loss(logits, token_ids):
    """The language-model loss: position t's logits predict token t + 1.

    logits (B, T, V) from the model run on token_ids (B, T)  ->  scalar, the mean cross-entropy
    over the B * (T - 1) positions that have a next token.
    """
    return cross_entropy(logits[:, :-1], token_ids[:, 1:])  # (B, T-1, V) against (B, T-1)


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW update (Loshchilov & Hutter), returning new tensors (param, exp_avg, exp_avg_sq).

    All tensors have the parameter's shape; ``step`` is 1 for the first update.
        param <- param * (1 - lr * weight_decay)           decay is *decoupled*: not part of grad
        m <- b1 m + (1 - b1) grad,   v <- b2 v + (1 - b2) grad^2
        param <- param - lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps)
    """
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    exp_avg = b1 * exp_avg + (1 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad**2
    m_hat = exp_avg / (1 - b1**step)  # bias correction: m and v start at zero
    v_hat = exp_avg_sq / (1 - b2**step)
    param = param - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return param, exp_avg, exp_avg_sq
