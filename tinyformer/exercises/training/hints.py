"""The classic mistakes of chapter "Training", each a wrong implementation the checker
recognises by its outputs, with the hint it prints."""

import torch
import torch.nn.functional as F

from ..component import Mistakes

MISTAKES = Mistakes()


@MISTAKES.add(
    "cross_entropy", "cross-entropy without the log-sum-exp shift (overflows at large logits)",
    hint="logsumexp(x) = m + log(sum(exp(x - m))) with m = max(x)",
)
def cross_entropy_no_shift(logits, targets):
    """log(sum(exp(logits))) without subtracting the max: exp overflows at large logits."""
    logsumexp = torch.log(torch.exp(logits).sum(dim=-1))
    return (logsumexp - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()


@MISTAKES.add(
    "cross_entropy", "log of softmax (underflows to log 0 at large logits)",
    hint="compute log-probabilities as x_y - logsumexp(x), never log(softmax(x))",
)
def cross_entropy_log_of_softmax(logits, targets):
    """log(softmax(x)): the softmax underflows to 0 for unlikely targets, and log(0) = -inf."""
    probs = torch.softmax(logits, dim=-1)
    return -torch.log(probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()


@MISTAKES.add(
    "next_token_loss", "targets not shifted",
    hint="position t predicts token t + 1: logits[:, :-1] against token_ids[:, 1:]",
)
def next_token_loss_unshifted(logits, token_ids):
    """Scores position t's logits against token t itself: the model learns to copy its input."""
    return F.cross_entropy(logits.flatten(0, -2), token_ids.flatten())


@MISTAKES.add(
    "next_token_loss", "targets shifted the wrong way",
    hint="logits[:, :-1] against token_ids[:, 1:], not logits[:, 1:] against token_ids[:, :-1]",
)
def next_token_loss_shifted_backwards(logits, token_ids):
    """Shifts the wrong way: logits[:, 1:] against token_ids[:, :-1] (predicts the previous token)."""
    return F.cross_entropy(logits[:, 1:].flatten(0, -2), token_ids[:, :-1].flatten())


@MISTAKES.add(
    "adamw_step", "AdamW folding decay into the gradient (L2, i.e. Adam, not decoupled)",
    hint="decay the parameter itself, param * (1 - lr * weight_decay), and leave grad alone",
)
def adamw_step_l2(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Adds weight_decay * param to the gradient (L2, i.e. Adam) instead of decaying param directly."""
    b1, b2 = betas
    grad = grad + weight_decay * param
    exp_avg = b1 * exp_avg + (1 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad**2
    denom = torch.sqrt(exp_avg_sq / (1 - b2**step)) + eps
    return param - lr * exp_avg / (1 - b1**step) / denom, exp_avg, exp_avg_sq


@MISTAKES.add(
    "adamw_step", "Adam without bias correction",
    hint="divide m by 1 - b1**step and v by 1 - b2**step (step counts from 1)",
)
def adamw_step_no_bias_correction(
    param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
):
    """Uses m and v as they are: early steps are the wrong size, since m and v start at zero."""
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    exp_avg = b1 * exp_avg + (1 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad**2
    return param - lr * exp_avg / (torch.sqrt(exp_avg_sq) + eps), exp_avg, exp_avg_sq


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("next_token_loss", next_token_loss_unshifted)
