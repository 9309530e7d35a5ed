"""Transformer blocks: attention and feed-forward wrapped in residuals and norms.

Two placements of the norm:
  post-norm (Vaswani et al., BERT):  x = norm(x + sublayer(x))
  pre-norm  (GPT-2, LLaMA):          x = x + sublayer(norm(x))
Pre-norm keeps an untouched residual path from input to output, which is why
deep pre-norm stacks train without careful warmup.

Taught in: Residuals and normalization (book/normalization.md)
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import KVCache, MultiHeadAttention
from .layers import Linear, attention_impl, make_feed_forward, make_norm
from .positions import RotaryPositionalEmbedding

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward.

    ``x (B, T, D)`` -> ``(B, T, D)``. With ``cross_attention=True`` it is a
    decoder layer of an encoder-decoder model and ``memory (B, S, D)`` (the
    encoder's output) must be passed to ``forward``.

    The defaults are the modern decoder block (pre-norm RMSNorm, SwiGLU, causal);
    ``norm="layer", norm_position="post", ffn="relu", bias=True, causal=False``
    is the original encoder layer, the same maths as ``nn.TransformerEncoderLayer``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        *,
        causal: bool = True,
        cross_attention: bool = False,
        norm: str = "rms",
        norm_position: str = "pre",
        ffn: str = "swiglu",
        bias: bool = False,
        rope: RotaryPositionalEmbedding | None = None,
        n_kv_heads: int | None = None,
        eps: float = 1e-5,
        attn_impl: str | None = None,
        impl: str = "scratch",
    ):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"unknown norm_position {norm_position!r}: expected 'pre' or 'post'")
        # impl="fused" switches every piece to PyTorch's kernels, attention included; attn_impl
        # (default: the same as impl) can fuse attention alone.
        attn_impl = attention_impl(impl, attn_impl)
        self.norm_position, self.impl = norm_position, impl
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, causal=causal, rope=rope, bias=bias, n_kv_heads=n_kv_heads, attn_impl=attn_impl
        )
        self.norm1 = make_norm(norm, d_model, eps, bias, impl=impl)
        self.cross_attn = (
            MultiHeadAttention(d_model, n_heads, bias=bias, n_kv_heads=n_kv_heads, attn_impl=attn_impl)
            if cross_attention
            else None
        )
        self.norm_cross = make_norm(norm, d_model, eps, bias, impl=impl) if cross_attention else None
        self.ffn = make_feed_forward(ffn, d_model, d_ff, bias, impl=impl)
        self.norm2 = make_norm(norm, d_model, eps, bias, impl=impl)
        for attn in (self.self_attn, self.cross_attn):  # attention builds its own projections
            for module in attn.modules() if attn is not None else ():
                if isinstance(module, Linear):
                    module.impl = impl

    def _residual(self, x, norm, fn):
        """Wrap ``fn`` (which returns ``(out, extra)``) in the residual + norm."""
        if self.norm_position == "pre":
            out, extra = fn(norm(x))
            return x + out, extra
        out, extra = fn(x)
        return norm(x + out), extra

    @staticmethod
    def _attend(attn: MultiHeadAttention, h: torch.Tensor, **kwargs):
        """Run attention and return ``(out, weights)``; the fused kernel has no weights to give."""
        if attn.attn_impl == "fused":
            return attn(h, **kwargs), None
        return attn(h, return_weights=True, **kwargs)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        token_positions: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        return_weights: bool = False,
    ):
        """Returns ``(B, T, D)``; with ``return_weights`` also a dict of per-head
        weights: ``"self"`` ``(B, H, T, T)`` and, in a decoder layer, ``"cross"`` ``(B, H, T, S)``."""
        if self.cross_attn is not None and memory is None:
            raise ValueError("this block has cross-attention: pass the encoder output as memory=(B, S, D)")
        if self.cross_attn is None and memory is not None:
            raise ValueError("memory was passed to a block without cross-attention")
        weights = {}
        x, weights["self"] = self._residual(
            x,
            self.norm1,
            lambda h: self._attend(
                self.self_attn, h, mask=self_mask, token_positions=token_positions, kv_cache=kv_cache
            ),
        )
        if self.cross_attn is not None:
            x, weights["cross"] = self._residual(
                x, self.norm_cross, lambda h: self._attend(self.cross_attn, h, context=memory, mask=memory_mask)
            )
        x, _ = self._residual(x, self.norm2, lambda h: (self.ffn(h), None))
        return (x, weights) if return_weights else x
