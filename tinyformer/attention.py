"""Scaled dot-product attention and multi-head attention.

Mask convention everywhere in tinyformer: a boolean tensor where ``True`` means
"may attend" (the same as ``F.scaled_dot_product_attention``'s boolean mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear, softmax
from .positions import RotaryPositionalEmbedding

__all__ = [
    "scaled_dot_product_attention",
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


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
):
    """softmax(q k^T / sqrt(d_k)) v, written out.

    Shapes: q ``(..., Tq, Dk)``, k ``(..., Tk, Dk)``, v ``(..., Tk, Dv)``, any
    leading batch/head dims (broadcast). ``mask`` is boolean, broadcastable to
    ``(..., Tq, Tk)``, True = may attend. Returns ``(..., Tq, Dv)``, and the
    attention weights ``(..., Tq, Tk)`` too when ``return_weights``.

    Why divide by sqrt(d_k): for unit-variance q and k, q.k has variance d_k.
    Unscaled, large d_k pushes softmax into saturation, where it is almost
    one-hot and its gradients vanish.

    A query row with every key masked out has no distribution to form: its
    weights (and output) are NaN, which is why the mask must leave each query
    at least one key.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension: q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions: k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Tq, Tk)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"attention mask must be boolean (True = may attend), got {mask.dtype}")
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                f"{tuple(scores.shape)} (..., Tq, Tk)"
            ) from None
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)  # each row sums to 1
    out = weights @ v  # (..., Tq, Tk) @ (..., Tk, Dv) -> (..., Tq, Dv)
    return (out, weights) if return_weights else out


class KVCache:
    """Keys and values of the positions already processed, for one attention layer.

    During generation each new token only needs its own query; its keys and
    values join the cache so later tokens can attend to them. Tensors are
    ``(B, H_kv, T_cached, Dh)``.
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
    is ``(H * Dh, D)``, rows ``h*Dh:(h+1)*Dh`` belonging to head h.

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
        if attn_impl not in ("scratch", "fused"):
            raise ValueError(f"unknown attn_impl {attn_impl!r}: expected 'scratch' or 'fused'")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        if rope is not None and rope.d_head != self.d_head:
            raise ValueError(f"RoPE built for d_head={rope.d_head}, but this attention has d_head={self.d_head}")
        self.causal, self.rope, self.attn_impl = causal, rope, attn_impl
        self.q_proj = Linear(d_model, n_heads * self.d_head, bias=bias)
        self.k_proj = Linear(d_model, n_kv_heads * self.d_head, bias=bias)
        self.v_proj = Linear(d_model, n_kv_heads * self.d_head, bias=bias)
        self.o_proj = Linear(n_heads * self.d_head, d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.d_head).transpose(1, 2)  # (B, T, n*Dh) -> (B, n, T, Dh)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        token_positions: torch.Tensor | None = None,
        return_weights: bool = False,
        kv_cache: KVCache | None = None,
    ):
        """See the class docstring. ``mask`` is boolean, broadcastable to ``(B, H, T, S)``.

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
        q = self._split_heads(self.q_proj(x), self.n_heads)  # (B, H, T, Dh)
        k = self._split_heads(self.k_proj(source), self.n_kv_heads)  # (B, Hkv, S, Dh)
        v = self._split_heads(self.v_proj(source), self.n_kv_heads)

        past = len(kv_cache) if kv_cache is not None else 0
        if self.rope is not None and not is_cross:
            if token_positions is None:
                token_positions = torch.arange(past, past + T, device=x.device)
            q, k = self.rope(q, token_positions), self.rope(k, token_positions)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, Hkv, past + T, Dh)
        S = k.shape[-2]

        # Plain causal self-attention: the fused kernel's is_causal skips building and reading a mask.
        causal_only = self.causal and mask is None and S == T
        if self.causal:
            allowed = causal_mask(T, S, device=x.device)  # (T, S)
            mask = allowed if mask is None else mask & allowed

        if self.attn_impl == "fused":
            if return_weights:
                raise ValueError("the fused kernel never materialises the weights; use attn_impl='scratch'")
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if causal_only else mask, is_causal=causal_only,
                enable_gqa=self.n_kv_heads != self.n_heads,
            )
            weights = None
        else:
            if self.n_kv_heads != self.n_heads:
                group = self.n_heads // self.n_kv_heads
                k = k.repeat_interleave(group, dim=1)  # (B, H, S, Dh): head h reads kv head h // group
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
