"""Whole models: the decoder-only language model, and the original encoder-decoder.

    token ids (B, T)
      -> token embedding (+ absolute positions)          (B, T, D)
      -> n_layers x TransformerBlock                     (B, T, D)
      -> final norm (pre-norm models)                    (B, T, D)
      -> lm_head                                         (B, T, V) logits

Taught in: The full language model (book/language_model.md); Encoder vs decoder vs decoder-only (book/architectures.md)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from .attention import KVCache
from .blocks import TransformerBlock
from .layers import Embedding, Linear, attention_impl, make_norm, swiglu_hidden_dim
from .initialization import initialize_weights
from .positions import LearnedPositionalEmbedding, RotaryPositionalEmbedding, SinusoidalPositionalEncoding

__all__ = [
    "TransformerConfig",
    "TransformerLM",
    "Encoder",
    "Decoder",
    "EncoderDecoder",
    "PRESETS",
    "ORIGINAL_ARCHITECTURE",
    "preset",
    "count_parameters",
    "parameter_breakdown",
]

def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    """An int field must really be an int (not a bool, float or string) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an integer or None" if allow_none else "an integer"
        raise TypeError(f"TransformerConfig.{name} must be {kind} >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"TransformerConfig.{name} must be an integer >= {minimum}, got {value}")


_CHOICES = {
    "positions": ("rope", "sinusoidal", "learned", "none"),
    "norm": ("rms", "layer"),
    "norm_position": ("pre", "post"),
    "ffn": ("swiglu", "gelu", "relu"),
    "init": ("default", "gpt2"),
}


@dataclass(frozen=True)
class TransformerConfig:
    """Every size and architectural choice of a model, in one place.

    The defaults describe a modern decoder (LLaMA-style): RoPE, pre-norm RMSNorm,
    SwiGLU, no biases, untied LM head. The original Transformer is
    ``positions="sinusoidal", norm="layer", norm_position="post", ffn="relu", bias=True``.
    """

    vocab_size: int
    context_length: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int | None = None  # None: 4 * d_model (relu/gelu) or swiglu_hidden_dim(d_model)
    n_kv_heads: int | None = None  # None: n_heads (plain multi-head attention)
    positions: str = "rope"
    norm: str = "rms"
    norm_position: str = "pre"
    ffn: str = "swiglu"
    bias: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    # "fused": PyTorch's kernels for attention alone; None (the default): the same as impl.
    # impl="fused" with attn_impl="scratch" is refused (see layers.attention_impl).
    attn_impl: str | None = None
    # "fused": PyTorch's kernels for attention, norms, activations and linear layers (same maths).
    impl: str = "scratch"
    # "default": Glorot-scaled Linear, unit-normal Embedding (a tied table is rescaled to fit the head);
    # "gpt2": N(0, 0.02) everywhere, residual output projections at 0.02 / sqrt(2 n_layers).
    init: str = "default"

    def __post_init__(self):
        # Checked here, once, so a bad value fails where it is written, with the field named,
        # not deep inside a layer (or never: a float n_heads or bool vocab_size would run).
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("d_ff", "n_kv_heads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1, allow_none=True)
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"TransformerConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TransformerConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.n_kv_heads is not None and self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: expected one of {allowed}")
        # Stored resolved, so config.attn_impl always says which attention the model runs.
        object.__setattr__(self, "attn_impl", attention_impl(self.impl, self.attn_impl))
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"positions='rope' rotates pairs of features, so d_head = d_model / n_heads must be "
                             f"even, got {self.d_model} / {self.n_heads} = {self.d_head}")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"positions='sinusoidal' needs an even d_model, got {self.d_model}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_width(self) -> int:
        if self.d_ff:
            return self.d_ff
        return swiglu_hidden_dim(self.d_model) if self.ffn == "swiglu" else 4 * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        if not isinstance(data, dict):
            raise TypeError(f"a TransformerConfig is read from a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig fields: {unknown}")
        return cls(**data)

    def replace(self, **changes) -> "TransformerConfig":
        """A copy with ``changes``. Attention that follows ``impl`` (``attn_impl == impl``) keeps
        following it: ``config.replace(impl="fused")`` fuses attention too."""
        if "impl" in changes and "attn_impl" not in changes and self.attn_impl == self.impl:
            changes["attn_impl"] = None
        return replace(self, **changes)


class _Embedder(nn.Module):
    """Token embedding plus absolute positions; RoPE instead lives inside attention."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.token_embedding = Embedding(config.vocab_size, config.d_model)
        self.position = None
        self.rope = None
        if config.positions == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(config.context_length, config.d_model)
        elif config.positions == "learned":
            self.position = LearnedPositionalEmbedding(config.context_length, config.d_model)
        elif config.positions == "rope":
            self.rope = RotaryPositionalEmbedding(config.d_head, config.context_length, config.rope_theta)

    def forward(self, token_ids: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        if token_ids.dim() != 2:
            raise ValueError(f"expected token ids of shape (B, T), got {tuple(token_ids.shape)}")
        T = token_ids.shape[1]
        if T == 0:
            raise ValueError("token ids of shape (B, 0): a sequence needs at least one token")
        if start_pos + T > self.config.context_length:
            raise ValueError(
                f"sequence of length {start_pos + T} is longer than the model's context_length "
                f"({self.config.context_length}); crop it (generate() does this for you)"
            )
        x = self.token_embedding(token_ids)  # (B, T, D)
        if self.position is not None:
            x = x + self.position(torch.arange(start_pos, start_pos + T, device=token_ids.device))
        return x


class _Stack(nn.Module):
    """What every stack is made of: ``embed`` (tokens + absolute positions), ``n_layers``
    ``blocks``, a ``final_norm`` (pre-norm stacks need one before the head; post-norm blocks
    already end in one) and, for stacks that predict tokens, an ``lm_head``.

    Built in that order, then initialised by ``config.init``: the order fixes which random
    numbers each parameter draws, and the names are the checkpoints' state_dict keys.
    """

    def __init__(self, config: TransformerConfig, *, causal: bool, cross_attention: bool,
                 lm_head: bool, tie_embeddings: bool = False):
        super().__init__()
        self.config = config
        self.embed = _Embedder(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                config.d_model,
                config.n_heads,
                config.ffn_width,
                causal=causal,
                cross_attention=cross_attention,
                norm=config.norm,
                norm_position=config.norm_position,
                ffn=config.ffn,
                bias=config.bias,
                rope=self.embed.rope,
                n_kv_heads=config.n_kv_heads,
                eps=config.norm_eps,
                attn_impl=config.attn_impl,
                impl=config.impl,
            )
            for _ in range(config.n_layers)
        )
        if config.norm_position == "pre":
            self.final_norm = make_norm(config.norm, config.d_model, config.norm_eps, config.bias, impl=config.impl)
        else:
            self.final_norm = nn.Identity()
        if lm_head:
            self.lm_head = Linear(config.d_model, config.vocab_size, impl=config.impl)
            if tie_embeddings:
                self.lm_head.weight = self.embed.token_embedding.weight
        initialize_weights(self, config)


class TransformerLM(_Stack):
    """Decoder-only language model: ``token_ids (B, T)`` -> logits ``(B, T, V)``.

    Position t's logits are the model's prediction of token t + 1, computed
    from tokens 0..t only (causal attention).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__(config, causal=True, cross_attention=False, lm_head=True,
                         tie_embeddings=config.tie_embeddings)

    def forward(
        self,
        token_ids: torch.Tensor,
        *,
        kv_caches: list[KVCache] | None = None,
        return_weights: bool = False,
    ):
        """``token_ids (B, T)`` -> logits ``(B, T, V)``.

        ``kv_caches``: one KVCache per layer; the ids are then the tokens that
        follow what the caches already hold. ``return_weights``: also return a
        list with each layer's attention weights ``(B, H, T, T)``.
        """
        if kv_caches is not None and len(kv_caches) != len(self.blocks):
            raise ValueError(f"need one KVCache per layer ({len(self.blocks)}), got {len(kv_caches)}")
        start = len(kv_caches[0]) if kv_caches else 0
        x = self.embed(token_ids, start_pos=start)
        all_weights = []
        for i, block in enumerate(self.blocks):
            x, weights = block(x, kv_cache=kv_caches[i] if kv_caches else None, return_weights=True)
            all_weights.append(weights["self"])
        logits = self.lm_head(self.final_norm(x))
        return (logits, all_weights) if return_weights else logits

    def new_kv_caches(self) -> list[KVCache]:
        return [KVCache() for _ in self.blocks]


class Encoder(_Stack):
    """Bidirectional stack (BERT, the left half of the original): ``(B, S)`` -> ``(B, S, D)``."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config, causal=False, cross_attention=False, lm_head=False)

    def forward(self, src_ids: torch.Tensor, *, src_mask: torch.Tensor | None = None, return_weights: bool = False):
        x = self.embed(src_ids)
        all_weights = []
        for block in self.blocks:
            x, weights = block(x, self_mask=src_mask, return_weights=True)
            all_weights.append(weights["self"])
        x = self.final_norm(x)
        return (x, all_weights) if return_weights else x


class Decoder(_Stack):
    """Causal stack that also attends to an encoder's output (cross-attention).

    ``tgt_ids (B, T)`` and ``memory (B, S, D)`` -> logits ``(B, T, V)``.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__(config, causal=True, cross_attention=True, lm_head=True)

    def forward(
        self,
        tgt_ids: torch.Tensor,
        memory: torch.Tensor,
        *,
        memory_mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ):
        x = self.embed(tgt_ids)
        all_weights = []
        for block in self.blocks:
            x, weights = block(x, memory, memory_mask=memory_mask, return_weights=True)
            all_weights.append(weights)
        logits = self.lm_head(self.final_norm(x))
        return (logits, all_weights) if return_weights else logits


class EncoderDecoder(nn.Module):
    """The original Transformer (translation-style): ``src (B, S)``, ``tgt (B, T)`` -> logits ``(B, T, V)``.

    The encoder reads the whole source bidirectionally; the decoder writes the
    target left to right, each layer asking the encoder's output (cross-attention)
    which source positions matter for the next token.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor, *, return_weights: bool = False):
        if src_ids.shape[0] != tgt_ids.shape[0]:
            raise ValueError(f"src and tgt batch sizes differ: {src_ids.shape[0]} vs {tgt_ids.shape[0]}")
        memory, enc_weights = self.encoder(src_ids, return_weights=True)
        logits, dec_weights = self.decoder(tgt_ids, memory, return_weights=True)
        if return_weights:
            return logits, {"encoder": enc_weights, "decoder": dec_weights}
        return logits


# The original Transformer's choices (Vaswani et al.): use as TransformerConfig(..., **ORIGINAL_ARCHITECTURE).
ORIGINAL_ARCHITECTURE = dict(positions="sinusoidal", norm="layer", norm_position="post", ffn="relu", bias=True)

PRESETS: dict[str, TransformerConfig] = {
    # The running example's numeric walkthrough: T=4, d_model=8, 2 heads, ReLU FFN of width 16, vocab 20.
    "walkthrough": TransformerConfig(
        vocab_size=20, context_length=4, d_model=8, n_layers=1, n_heads=2, d_ff=16, **ORIGINAL_ARCHITECTURE
    ),
    # The ~25M base model: the original architecture at 512d, 8 heads, 2048 FFN, 6 layers, decoder-only.
    # A 6144-token BPE vocabulary brings it to ~25M parameters.
    "base-25m": TransformerConfig(
        vocab_size=6144, context_length=256, d_model=512, n_layers=6, n_heads=8, d_ff=2048, **ORIGINAL_ARCHITECTURE
    ),
    # The original-architecture toy: the base model's shape scaled down to ~250K parameters.
    "original-toy": TransformerConfig(
        vocab_size=384, context_length=128, d_model=64, n_layers=4, n_heads=4, d_ff=256, **ORIGINAL_ARCHITECTURE
    ),
    # The modern small decoder the book trains at build time. vocab_size is a
    # placeholder: training replaces it with the tokenizer's (63 characters for the KJV).
    "book-small": TransformerConfig(
        vocab_size=96, context_length=64, d_model=128, n_layers=4, n_heads=4, d_ff=384
    ),
}


def preset(name: str, **overrides) -> TransformerConfig:
    """A named configuration from :data:`PRESETS`, with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose from {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters; tied (shared) tensors are counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level child module (tied tensors counted at their first owner)."""
    seen: set[int] = set()
    out: dict[str, int] = {}
    for name, child in model.named_children():
        n = 0
        for p in child.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        out[name] = n
    return out
