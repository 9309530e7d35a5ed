"""The classic mistakes of chapter "Sampling", each a wrong implementation the checker
recognises by its outputs, with the hint it prints."""

import torch

from ..component import Mistakes

MISTAKES = Mistakes()


@MISTAKES.add(
    "top_k_distribution", "top-k not renormalised",
    hint="after zeroing the others, divide the k kept probabilities by their sum "
    "(or mask the logits with -inf before the softmax)",
)
def top_k_not_renormalised(logits, k, temperature=1.0):
    """Zeroes all but the k largest probabilities and stops there: the rest no longer sum to 1."""
    probs = torch.softmax(logits / temperature, dim=-1)
    kth = torch.topk(probs, k, dim=-1).values[..., -1:]
    return probs.masked_fill(probs < kth, 0.0)


@MISTAKES.add(
    "top_p_distribution", "top-p keeping the token that crosses p out instead of in",
    hint="keep a token when the mass of the tokens *before* it is < p: cumsum - probs < p",
)
def top_p_crossing_token_out(logits, p, temperature=1.0):
    """Keeps tokens while the running total (including themselves) stays below p, so the token
    that crosses p is dropped and the kept mass is < p."""
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = torch.cumsum(sorted_probs, dim=-1) < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(dim=-1, keepdim=True)


@MISTAKES.add(
    "top_p_distribution", "top-p not renormalised",
    hint="divide the kept probabilities by their sum",
)
def top_p_not_renormalised(logits, p, temperature=1.0):
    """Keeps the right tokens but forgets to renormalise them."""
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < p
    return probs * torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("top_p_distribution", top_p_crossing_token_out)
