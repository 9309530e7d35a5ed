"""Scaled dot-product attention and multi-head attention.

Mask convention everywhere in tinyformer: a boolean tensor where ``True`` means
"may attend" (the same as ``F.scaled_dot_product_attention``'s boolean mask), or
a float tensor added to the scores (0 keeps a key, -inf blocks it). A query with
every key blocked gets a zero output, never NaN (see scaled_dot_product_attention).

Taught in:
    Self-attention, by hand (book/attention.md); Masks: causal vs bidirectional (book/masks.md);
    Multi-head attention and the MLP (book/multihead.md); the KV cache in Making it fast (book/fast.md)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear, check_impl, softmax
from .positions import RotaryPositionalEmbedding

__all__ = [
    "scaled_dot_product_attention",
    "fused_scaled_dot_product_attention",
    "causal_mask",
    "KVCache",
    "MultiHeadAttention",
]


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """Lower-triangular ``(q_len, k_len)`` boolean mask: query i may see keys j <= i.

    With ``k_len > q_len`` the queries are the *last* q_len positions of the key
    sequence (as when a KV cache holds the earlier ones), so the diagonal shifts.
    """
    k_len = q_len if k_len is None else k_len
    if k_len < q_len:
        raise ValueError(f"causal_mask needs k_len >= q_len, got q_len={q_len}, k_len={k_len}")
    q_pos = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
    k_pos = torch.arange(k_len, device=device)[None, :]
    return k_pos <= q_pos


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size, who: str) -> None:
    """The mask rules shared by both attention paths (see scaled_dot_product_attention)."""
    if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
        raise TypeError(
            f"{who}: attention mask must be boolean (True = may attend) or floating point "
            f"(added to the scores: 0 keeps a key, -inf blocks it), got dtype {mask.dtype}"
        )
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"{who}: mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"{tuple(scores_shape)} (..., Tq, Tk)"
        ) from None
    if mask.dtype.is_floating_point and bool((mask.isnan() | (mask == float("inf"))).any()):
        raise ValueError(f"{who}: a float attention mask may hold finite values and -inf, not NaN or +inf")


def _allowed(mask: torch.Tensor) -> torch.Tensor:
    """Boolean view of either mask kind: True where the query may attend to the key."""
    return mask if mask.dtype == torch.bool else mask > float("-inf")


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """The shape rules both attention paths share, with the same messages."""
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension: q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions: k {tuple(k.shape)}, v {tuple(v.shape)}"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
):
    """softmax(q k^T / sqrt(d_head) + mask) v, written out.

    Shapes: q ``(..., Tq, d_head)``, k ``(..., Tk, d_head)``, v ``(..., Tk, Dv)``,
    any leading batch/head dims (broadcast). Returns ``(..., Tq, Dv)``, and the
    attention weights ``(..., Tq, Tk)`` too when ``return_weights``.

    ``mask``, broadcastable to ``(..., Tq, Tk)``, is either
      boolean   True = may attend (as ``F.scaled_dot_product_attention``), or
      float     added to the scores: 0 keeps a key, -inf blocks it, other finite
                values bias it (an ALiBi-style bias). NaN and +inf are refused.
    Any other dtype is a TypeError. ``fused_scaled_dot_product_attention`` accepts
    exactly the same masks and returns the same numbers.

    Why divide by sqrt(d_head): for unit-variance q and k, q.k has variance d_head.
    Unscaled, large d_head pushes softmax into saturation, where it is almost
    one-hot and its gradients vanish.

    A query row with every key masked out has no distribution to form
    (softmax of all -inf is 0/0). Such a row gets all-zero weights and an
    all-zero output, in both paths, with zero (not NaN) gradients. Zeros, not
    NaN, because a NaN would not stay put: the next layer mixes every position
    with weights that are 0 for this one, and 0 * NaN = NaN, so one padded row
    would spoil every real position after it.
    """
    _check_qkv(q, k, v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Tq, Tk)
    if mask is None:
        weights = softmax(scores, dim=-1)  # each row sums to 1
    else:
        _check_mask(mask, scores.shape, "scaled_dot_product_attention")
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
        row_has_key = _allowed(mask).any(dim=-1, keepdim=True)  # (..., Tq, 1)
        # Give empty rows finite scores before softmax so neither the forward pass
        # nor the backward pass ever sees 0/0; the multiply then zeroes them.
        scores = scores.masked_fill(~row_has_key, 0.0)
        weights = softmax(scores, dim=-1) * row_has_key  # rows sum to 1, or to 0 when empty
    out = weights @ v  # (..., Tq, Tk) @ (..., Tk, Dv) -> (..., Tq, Dv)
    return (out, weights) if return_weights else out


def fused_scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """PyTorch's ``F.scaled_dot_product_attention`` kernels under our mask rules.

    Same arguments, masks and results as ``scaled_dot_product_attention`` (the
    attention weights are never materialised, so there is no ``return_weights``).
    PyTorch's kernels differ among themselves on a fully masked row (NaN on some
    backends, zeros on others) and want a float mask in the query's dtype; this
    wrapper casts the mask and zeroes empty rows itself, so the answer does not
    depend on which kernel runs. ``enable_gqa`` lets k/v have fewer heads (dim -3)
    than q, each shared by a group of query heads.
    """
    _check_qkv(q, k, v)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa)
    scores_shape = (*q.shape[:-1], k.shape[-2])  # (..., Tq, Tk)
    _check_mask(mask, torch.Size(scores_shape), "fused_scaled_dot_product_attention")
    row_has_key = _allowed(mask).any(dim=-1, keepdim=True)  # (..., Tq, 1)
    if mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    # Empty rows get an all-zero additive mask (finite everywhere) so no kernel
    # divides 0 by 0; their output is then replaced by zeros.
    if mask.dtype == torch.bool:
        mask = mask | ~row_has_key
    else:
        mask = mask.masked_fill(~row_has_key, 0.0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=enable_gqa)
    return out * row_has_key.to(out.dtype)


class KVCache:
    """Keys and values of the positions already processed, for one attention layer.

    During generation each new token only needs its own query; its keys and
    values join the cache so later tokens can attend to them. Tensors are
    ``(B, H_kv, T_cached, d_head)``.
    """

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def nbytes(self) -> int:
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention.

    ``x (B, T, D)`` -> ``(B, T, D)``. Queries come from ``x``; keys and values
    from ``x`` (self-attention) or from ``context (B, S, D)`` (cross-attention,
    the encoder-decoder bridge).

    Each projection stacks its heads along the output rows: ``q_proj.weight``
    is ``(H * d_head, D)``, rows ``h*d_head:(h+1)*d_head`` belonging to head h.

    Options:
      causal       mask future positions (decoder self-attention).
      rope         a RotaryPositionalEmbedding applied to q and k (self-attention only).
      n_kv_heads   grouped-query attention: H_kv < H key/value heads, each shared by
                   H / H_kv query heads (n_kv_heads == n_heads is plain multi-head).
      attn_impl    "scratch" (our own scaled_dot_product_attention) or "fused"
                   (PyTorch's F.scaled_dot_product_attention kernels). Same maths.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool = False,
        rope: RotaryPositionalEmbedding | None = None,
        bias: bool = False,
        n_kv_heads: int | None = None,
        attn_impl: str = "scratch",
    ):
        super().__init__()
        if n_heads <= 0 or d_model % n_heads:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by n_heads ({n_heads}): each head gets "
                f"d_model / n_heads features"
            )
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads <= 0 or n_heads % n_kv_heads:
            raise ValueError(
                f"n_heads ({n_heads}) must be divisible by n_kv_heads ({n_kv_heads}): query heads "
                f"share key/value heads in equal groups"
            )
        check_impl(attn_impl, "attn_impl")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        if rope is not None and rope.d_head != self.d_head:
            raise ValueError(f"RoPE built for d_head={rope.d_head}, but this attention has d_head={self.d_head}")
        self.causal, self.rope, self.attn_impl = causal, rope, attn_impl
        self.q_proj = Linear(d_model, n_heads * self.d_head, bias=bias)
        self.k_proj = Linear(d_model, n_kv_heads * self.d_head, bias=bias)
        self.v_proj = Linear(d_model, n_kv_heads * self.d_head, bias=bias)
        self.o_proj = Linear(n_heads * self.d_head, d_model, bias=bias)

    @staticmethod
    def _head_broadcast_positions(token_positions: torch.Tensor, B: int, T: int) -> torch.Tensor:
        """Positions ready to rotate q/k of shape (B, H, T, d_head).

        A (B, T) tensor must become (B, 1, T): left as it is, it would broadcast
        against (H, T), pairing sequence b's positions with head b.
        """
        if not isinstance(token_positions, torch.Tensor):
            raise TypeError(f"token_positions must be an integer tensor, got {type(token_positions).__name__}")
        shape = tuple(token_positions.shape)
        if token_positions.dim() == 1 and shape[0] == T:
            return token_positions  # (T,): broadcasts over B and H
        if token_positions.dim() == 2 and shape[1] == T and shape[0] in (1, B):
            return token_positions[:, None, :]  # (B or 1, 1, T)
        raise ValueError(
            f"token_positions must have shape (T,), (1, T) or (B, T) = ({T},), (1, {T}) or ({B}, {T}) "
            f"for x of shape (B={B}, T={T}, D), got {shape}"
        )

    def _split_heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.d_head).transpose(1, 2)  # (B, T, n*d_head) -> (B, n, T, d_head)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        token_positions: torch.Tensor | None = None,
        return_weights: bool = False,
        kv_cache: KVCache | None = None,
    ):
        """See the class docstring.

        ``mask``: boolean (True = may attend) or float (added to the scores),
        broadcastable to ``(B, H, T, S)``; with ``causal`` it is combined with the
        causal mask. A query left with no key gets a zero output (both paths).
        ``token_positions`` (RoPE only): the positions of the T queries, shape
        ``(T,)`` or ``(1, T)`` (shared by the batch) or ``(B, T)`` (one row per
        sequence); by default ``past, ..., past + T - 1`` after a KV cache's ``past``.

        Returns ``(B, T, D)``, plus per-head weights ``(B, H, T, S)`` if ``return_weights``.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"attention expects x of shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        is_cross = context is not None
        if is_cross and (context.dim() != 3 or context.shape[-1] != self.d_model):
            raise ValueError(
                f"cross-attention expects context of shape (B, S, {self.d_model}), got {tuple(context.shape)}"
            )
        if is_cross and kv_cache is not None:
            raise ValueError("a KV cache is for self-attention; cross-attention keys do not grow")
        B, T, _ = x.shape
        source = context if is_cross else x
        q = self._split_heads(self.q_proj(x), self.n_heads)  # (B, H, T, d_head)
        k = self._split_heads(self.k_proj(source), self.n_kv_heads)  # (B, H_kv, S, d_head)
        v = self._split_heads(self.v_proj(source), self.n_kv_heads)

        past = len(kv_cache) if kv_cache is not None else 0
        if token_positions is not None and (self.rope is None or is_cross):
            raise ValueError(
                "token_positions are only used to rotate queries and keys in RoPE self-attention; "
                + ("this is cross-attention" if is_cross else "this attention has no rope")
            )
        if self.rope is not None and not is_cross:
            if token_positions is None:
                token_positions = torch.arange(past, past + T, device=x.device)
            positions = self._head_broadcast_positions(token_positions, B, T)  # (T,) or (B or 1, 1, T)
            q, k = self.rope(q, positions), self.rope(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, H_kv, past + T, d_head)
        S = k.shape[-2]

        # Plain causal self-attention: the fused kernel's is_causal skips building and reading a mask.
        causal_only = self.causal and mask is None and S == T
        if self.causal:
            allowed = causal_mask(T, S, device=x.device)  # (T, S)
            if mask is None:
                mask = allowed
            elif mask.dtype == torch.bool:
                mask = mask & allowed
            else:
                mask = mask.masked_fill(~allowed, float("-inf"))

        if self.attn_impl == "fused":
            if return_weights:
                raise ValueError("the fused kernel never materialises the weights; use attn_impl='scratch'")
            if causal_only:  # every row keeps its diagonal, so no row is fully masked
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
            else:
                out = fused_scaled_dot_product_attention(q, k, v, mask, enable_gqa=self.n_kv_heads != self.n_heads)
            weights = None
        else:
            if self.n_kv_heads != self.n_heads:
                group = self.n_heads // self.n_kv_heads
                k = k.repeat_interleave(group, dim=1)  # (B, H, S, d_head): head h reads kv head h // group
                v = v.repeat_interleave(group, dim=1)
            out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)

        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)  # concat heads
        out = self.o_proj(out)
        return (out, weights) if return_weights else out

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, "
            f"causal={self.causal}, rope={self.rope is not None}, attn_impl={self.attn_impl!r}"
        )
