"""Chapter "Sampling": top-k and top-p (nucleus) next-token distributions."""

import torch


def top_k_distribution(logits, k, temperature=1.0):
    """softmax(logits / τ), keeping only the k most likely tokens: (..., V) -> (..., V).

    The other V - k tokens get probability 0; the k kept ones are renormalised to sum to 1.
    """
    logits = logits / temperature
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


def top_p_distribution(logits, p, temperature=1.0):
    """softmax(logits / τ), keeping the smallest set of most likely tokens whose mass reaches p.

    logits (..., V) -> probabilities (..., V). The token whose probability carries the running
    total past p is kept (so the kept mass is >= p); the rest get 0; the kept ones are renormalised.
    """
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the better tokens
    keep_sorted = mass_before < p  # the crossing token still has mass_before < p: kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(dim=-1, keepdim=True)
