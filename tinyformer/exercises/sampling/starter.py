"""Your turn, chapter "Sampling": top-k and top-p (nucleus) next-token distributions.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter sampling
"""

import torch


def top_k_distribution(logits, k, temperature=1.0):
    """softmax(logits / τ), keeping only the k most likely tokens: (..., V) -> (..., V).

    τ is ``temperature``. The other V - k tokens get probability 0, and the k kept ones
    are renormalised so each row sums to 1.
    """
    raise NotImplementedError


def top_p_distribution(logits, p, temperature=1.0):
    """softmax(logits / τ), keeping the smallest set of most likely tokens whose mass reaches p.

    logits (..., V) -> probabilities (..., V). Walk the tokens from most to least likely; the
    token that carries the running total past p is kept (so the kept mass is >= p). The rest
    get 0, and the kept ones are renormalised so each row sums to 1.
    """
    raise NotImplementedError
