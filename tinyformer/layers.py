"""Basic building blocks: Linear, Embedding, activations, normalisation, feed-forward.

Everything here is written with tensor operations only. PyTorch's own modules
(``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``, ``nn.RMSNorm``, ``F.softmax``)
are the references these are tested against, not building blocks.

Shape notation used throughout the package:
    B  batch size            T  sequence length (time)
    D  d_model               H  number of heads        d_head  head dimension (D // H)
    F  feed-forward width    V  vocabulary size

Taught in:
    Text to tokens (book/tokens.md): Linear, Embedding
    Self-attention, by hand (book/attention.md): softmax
    Multi-head attention and the MLP (book/multihead.md): activations, FeedForward, SwiGLU
    Residuals and normalization (book/normalization.md): LayerNorm, RMSNorm
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Linear",
    "Embedding",
    "softmax",
    "relu",
    "silu",
    "gelu",
    "LayerNorm",
    "RMSNorm",
    "FeedForward",
    "SwiGLU",
    "swiglu_hidden_dim",
    "make_feed_forward",
    "make_norm",
    "IMPLS",
    "check_impl",
    "attention_impl",
]

# "scratch": every piece written out with tensor operations (what the chapters teach).
# "fused": the same maths through PyTorch's single-kernel functions (F.layer_norm, F.gelu, ...),
# fewer intermediate tensors and passes over memory; each scratch piece is tested against it.
IMPLS = ("scratch", "fused")


def check_impl(value: str, name: str = "impl") -> str:
    """``value`` if it is one of :data:`IMPLS`; otherwise a ValueError naming the argument."""
    if value not in IMPLS:
        raise ValueError(f"unknown {name} {value!r}: expected one of {IMPLS}")
    return value


def attention_impl(impl: str, attn_impl: str | None = None) -> str:
    """The attention a model or block runs when its other pieces use ``impl``: ``attn_impl``
    when given, else ``impl``.

    ``impl="scratch", attn_impl="fused"`` fuses attention alone (the fast kernel, the rest as
    taught); ``impl="fused"`` fuses every piece, attention included, so ``attn_impl="scratch"``
    beside it contradicts it and is refused rather than ignored.
    """
    check_impl(impl)
    if attn_impl is None:
        return impl
    check_impl(attn_impl, "attn_impl")
    if impl == "fused" and attn_impl == "scratch":
        raise ValueError("impl='fused' runs every piece through PyTorch's kernels, attention included, but "
                         "attn_impl='scratch' asks for the from-scratch attention: leave attn_impl out (it "
                         "follows impl), or set impl='scratch', attn_impl='fused' to fuse attention alone")
    return attn_impl


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half precision to float32; leave float32/float64 as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_last_dim(x: torch.Tensor, expected: int, what: str) -> None:
    if x.dim() == 0 or x.shape[-1] != expected:
        raise ValueError(
            f"{what} expects input whose last dimension is {expected}, got shape {tuple(x.shape)}"
        )


class Linear(nn.Module):
    """y = x W^T (+ b), with W stored as ``(d_out, d_in)`` like ``nn.Linear``.

    Input ``(..., d_in)`` -> output ``(..., d_out)``.

    Initialisation: truncated normal with std = sqrt(2 / (d_in + d_out)), cut at
    +-3 std. This keeps activations at roughly unit scale at the start of
    training, and the truncation removes rare huge weights.
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = False, device=None, dtype=None, impl: str = "scratch"):
        super().__init__()
        if d_in <= 0 or d_out <= 0:
            raise ValueError(f"Linear needs positive sizes, got d_in={d_in}, d_out={d_out}")
        check_impl(impl)
        self.d_in, self.d_out, self.impl = d_in, d_out, impl
        std = math.sqrt(2.0 / (d_in + d_out))
        weight = torch.empty(d_out, d_in, device=device, dtype=dtype)
        nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_last_dim(x, self.d_in, "Linear")
        if self.impl == "fused":  # one GEMM with the bias added in (addmm), no separate add
            return F.linear(x, self.weight, self.bias)
        y = x @ self.weight.T  # (..., d_in) @ (d_in, d_out) -> (..., d_out)
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, bias={self.bias is not None}"


class Embedding(nn.Module):
    """A lookup table: token ids ``(...)`` -> vectors ``(..., d)``.

    Row ``i`` of the ``(num_embeddings, d)`` weight is the vector of token ``i``.
    An id outside ``[0, num_embeddings)`` raises a ValueError naming the id,
    instead of an opaque index error.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError(
                f"Embedding needs positive sizes, got num_embeddings={num_embeddings}, "
                f"embedding_dim={embedding_dim}"
            )
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        weight = torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
        nn.init.trunc_normal_(weight, mean=0.0, std=1.0, a=-3.0, b=3.0)
        self.weight = nn.Parameter(weight)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        if token_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"Embedding expects integer token ids, got dtype {token_ids.dtype}")
        if token_ids.numel():
            lo, hi = int(token_ids.min()), int(token_ids.max())
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"unknown token id {bad}: this Embedding has ids 0..{self.num_embeddings - 1}"
                )
        # index_select rather than weight[ids]: its backward adds the gradients of
        # repeated ids in a fixed order on CPU, so training runs are bit-reproducible.
        rows = torch.index_select(self.weight, 0, token_ids.reshape(-1).long())
        return rows.view(*token_ids.shape, self.embedding_dim)  # (...) -> (..., d)

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim`` (any shape in, same shape out).

    Subtracting the maximum first changes nothing mathematically
    (softmax(x) == softmax(x - c)) but keeps ``exp`` from overflowing: logits of
    +1000 would otherwise give inf / inf = nan.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    exp = torch.exp(shifted)
    return exp / exp.sum(dim=dim, keepdim=True)


def relu(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0), element-wise."""
    return torch.clamp_min(x, 0.0)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU / swish: x * sigmoid(x), element-wise."""
    return x * torch.sigmoid(x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU: x * Phi(x), with Phi the standard normal CDF, element-wise."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension: ``(..., d)`` -> ``(..., d)``.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.
    Computed in (at least) float32 and cast back, so bf16/fp16 inputs do not lose the
    small differences the normalisation divides by.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True, device=None, dtype=None,
                 impl: str = "scratch"):
        super().__init__()
        check_impl(impl)
        self.d_model, self.eps, self.impl = d_model, eps, impl
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_last_dim(x, self.d_model, "LayerNorm")
        in_dtype = x.dtype
        if self.impl == "fused":  # one kernel, same float32 upcast
            y = F.layer_norm(_at_least_float32(x), (self.d_model,), self.weight, self.bias, self.eps)
            return y.to(in_dtype)
        x = _at_least_float32(x)
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.to(in_dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich, 2019) over the last dimension: ``(..., d)`` -> ``(..., d)``.

    y = x / sqrt(mean(x^2) + eps) * weight. No mean subtraction and no bias:
    cheaper than LayerNorm and, in practice, just as stable. Computed in (at least) float32
    and cast back.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None, impl: str = "scratch"):
        super().__init__()
        check_impl(impl)
        self.d_model, self.eps, self.impl = d_model, eps, impl
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_last_dim(x, self.d_model, "RMSNorm")
        in_dtype = x.dtype
        if self.impl == "fused":
            return F.rms_norm(_at_least_float32(x), (self.d_model,), self.weight, self.eps).to(in_dtype)
        x = _at_least_float32(x)
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x * inv_rms * self.weight.to(x.dtype)).to(in_dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, eps={self.eps}"


def make_norm(kind: str, d_model: int, eps: float = 1e-5, bias: bool = True, impl: str = "scratch") -> nn.Module:
    """``"rms"`` -> RMSNorm, ``"layer"`` -> LayerNorm."""
    if kind == "rms":
        return RMSNorm(d_model, eps=eps, impl=impl)
    if kind == "layer":
        return LayerNorm(d_model, eps=eps, bias=bias, impl=impl)
    raise ValueError(f"unknown norm {kind!r}: expected 'rms' or 'layer'")


class FeedForward(nn.Module):
    """The original two-layer MLP: w2(act(w1 x)), applied to each position alone.

    ``(..., D)`` -> ``(..., F)`` -> ``(..., D)``. ``activation`` is ``"relu"``
    (Vaswani et al.) or ``"gelu"`` (GPT-2, BERT).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True, impl: str = "scratch"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}: expected 'relu' or 'gelu'")
        check_impl(impl)
        self.activation, self.impl = activation, impl
        self.w1 = Linear(d_model, d_ff, bias=bias, impl=impl)
        self.w2 = Linear(d_ff, d_model, bias=bias, impl=impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "fused":
            act = F.relu if self.activation == "relu" else F.gelu
        else:
            act = relu if self.activation == "relu" else gelu
        return self.w2(act(self.w1(x)))


def swiglu_hidden_dim(d_model: int, multiple_of: int = 64) -> int:
    """8/3 * d_model rounded up to a multiple of ``multiple_of``.

    SwiGLU has three weight matrices instead of two; 8/3 keeps its parameter
    count equal to a 4x ReLU MLP, and the rounding keeps matmuls hardware-friendly.
    """
    return multiple_of * math.ceil(8 * d_model / 3 / multiple_of)


class SwiGLU(nn.Module):
    """Gated feed-forward (Shazeer, 2020): w2(silu(w1 x) * w3 x).

    ``(..., D)`` -> two ``(..., F)`` branches, multiplied -> ``(..., D)``. No biases,
    as in LLaMA. ``d_ff`` defaults to :func:`swiglu_hidden_dim`.
    """

    def __init__(self, d_model: int, d_ff: int | None = None, impl: str = "scratch"):
        super().__init__()
        check_impl(impl)
        d_ff = d_ff or swiglu_hidden_dim(d_model)
        self.impl = impl
        self.w1 = Linear(d_model, d_ff, impl=impl)  # gate branch
        self.w3 = Linear(d_model, d_ff, impl=impl)  # value branch
        self.w2 = Linear(d_ff, d_model, impl=impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.silu if self.impl == "fused" else silu
        return self.w2(act(self.w1(x)) * self.w3(x))


def make_feed_forward(kind: str, d_model: int, d_ff: int | None, bias: bool = True, impl: str = "scratch") -> nn.Module:
    """``"swiglu"`` -> SwiGLU; ``"relu"`` / ``"gelu"`` -> FeedForward (d_ff defaults to 4 D)."""
    if kind == "swiglu":
        return SwiGLU(d_model, d_ff, impl=impl)
    return FeedForward(d_model, d_ff or 4 * d_model, activation=kind, bias=bias, impl=impl)
