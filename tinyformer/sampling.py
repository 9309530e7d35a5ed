"""From logits to tokens: temperature, top-k, top-p, and autoregressive generation.

Taught in: From logits to probabilities: sampling (book/sampling.md)
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .layers import softmax

__all__ = ["next_token_distribution", "sample_next_token", "generate"]


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_sampling_options(temperature, top_k, top_p) -> None:
    """One clear error per bad knob, before any tensor work."""
    if not _is_real(temperature) or math.isnan(temperature) or math.isinf(temperature) or temperature < 0:
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}"
        )
    if top_k is not None and (not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None to keep every token), got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1] (or None to keep every token), got {top_p!r}")


def next_token_distribution(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Turn logits ``(..., V)`` into the probabilities ``(..., V)`` that sampling draws from.

    temperature  divides the logits: < 1 sharpens, > 1 flattens, 0 is greedy
                 (all mass on the argmax). Must be finite and >= 0; one so small
                 that logits / temperature overflow to inf is an error (use 0).
    top_k        keep the k most likely tokens, renormalise.
    top_p        keep the smallest set of most likely tokens whose mass reaches p
                 (nucleus sampling), renormalise. The token that crosses p is kept.
    """
    _check_sampling_options(temperature, top_k, top_p)
    logits = logits.float()
    if bool(logits.isnan().any()):
        raise ValueError("logits contain NaN: the model's output is broken, there is no distribution to sample")
    if temperature == 0:
        greedy = torch.zeros_like(logits)
        return greedy.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    scaled = logits / temperature
    if bool((scaled.isinf() & logits.isfinite()).any()):
        # e.g. temperature=1e-45: logits / temperature overflows float32 to inf, and
        # softmax of inf is NaN. Greedy decoding is what such a temperature means.
        raise ValueError(
            f"temperature {temperature!r} is so small that logits / temperature overflow float32 to inf; "
            f"use temperature=0 for greedy decoding, or a temperature of at least about 1e-30"
        )
    logits = scaled
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of strictly better tokens
        keep_sorted = mass_before < top_p
        keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        probs = probs * keep
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row: logits ``(B, V)`` -> ids ``(B,)``."""
    probs = next_token_distribution(logits, temperature, top_k, top_p)
    if temperature == 0:
        return probs.argmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
    use_kv_cache: bool = False,
) -> torch.Tensor:
    """Extend ``prompt`` (``(T,)`` or ``(B, T)`` ids) by up to ``max_new_tokens`` tokens.

    The context fed to the model is cropped to its last ``context_length``
    tokens, so generation can run past the model's window. ``seed`` makes the
    samples reproducible. With ``use_kv_cache`` each step feeds only the new
    token and reuses earlier keys/values; once the window is full the cache is
    rebuilt from the cropped context, so the tokens match generation without it.
    Stops early when every row has produced ``eos_id``. Returns the prompt
    followed by the new tokens, with the prompt's shape.
    """
    if not isinstance(max_new_tokens, numbers.Integral) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    _check_sampling_options(temperature, top_k, top_p)  # even when no token is drawn
    squeeze = prompt.dim() == 1
    ids = prompt[None] if squeeze else prompt
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"prompt must be a non-empty (T,) or (B, T) tensor of ids, got {tuple(prompt.shape)}")
    context_length = model.config.context_length
    device = next(model.parameters()).device
    ids = ids.to(device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    caches = None
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        if use_kv_cache:
            cached = len(caches[0]) if caches else 0
            if caches is None or cached + 1 > context_length or cached != ids.shape[1] - 1:
                caches = model.new_kv_caches()
                # Prefill everything except the newest token, which the step below feeds.
                window = ids[:, -context_length:]
                if window.shape[1] > 1:
                    model(window[:, :-1], kv_caches=caches)
            logits = model(ids[:, -1:], kv_caches=caches)[:, -1]
        else:
            logits = model(ids[:, -context_length:])[:, -1]  # (B, V): prediction for the next token
        next_id = sample_next_token(logits, temperature, top_k, top_p, generator)
        ids = torch.cat([ids, next_id[:, None]], dim=1)
        if eos_id is not None:
            finished |= next_id == eos_id
            if bool(finished.all()):
                break
    model.train(was_training)
    return ids[0] if squeeze else ids
