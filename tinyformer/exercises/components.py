"""What the checker knows about each component: its seeded test cases, its references
(tinyformer's own implementation, and PyTorch's where PyTorch has one), and the
classic mistakes it can name.

Shape notation (the book's): B batch, T sequence length, D = d_model, H heads,
d_head = D / H, V vocabulary, τ temperature.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import tinyformer as tf

from . import mistakes as wrong

# The book's chapters that have exercises, in reading order (the names of the starter files).
CHAPTERS = (
    "tokens", "positions", "attention", "masks", "multihead", "normalization", "language_model", "training", "sampling",
)


@dataclass
class Case:
    """One seeded input. For a class component, ``init`` are the constructor's arguments and
    ``args`` the forward's; ``dtype`` is the floating dtype the output must have (None: no rule)."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: tuple = ()
    dtype: torch.dtype | None = None


@dataclass
class Mistake:
    title: str  # what the checker prints: "scores not divided by √d_head"
    hint: str  # what to look at
    impl: Any  # a wrong implementation with the reader's interface (in mistakes.py)


@dataclass
class Component:
    name: str
    chapter: str
    kind: str  # "function" or "class"
    cases: Callable[[], list[Case]]
    references: dict[str, Callable[[Case], Any]]  # who -> expected output for a case
    mistakes: list[Mistake] = field(default_factory=list)
    atol: dict = field(default_factory=lambda: {torch.float32: 1e-5, torch.float64: 1e-10})
    out_dtype: torch.dtype | None = None  # a fixed output dtype (bool masks), overriding Case.dtype
    run: Callable | None = None  # custom "call the implementation on a case" (AdamW's several steps)
    reference_module: Callable[[Case], nn.Module] | None = None  # class components: seeded tinyformer module
    param_names: Callable[[Case], dict[str, str]] | None = None  # reader's name -> reference module's name

    @property
    def qualname(self) -> str:
        return f"{self.chapter}.{self.name}"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g, *shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _call(fn):
    """A reference that is a plain function with the reader's signature."""
    return lambda case: fn(*case.args, **case.kwargs)


# ----------------------------------------------------------------------- tokens


def _count_pairs_cases():
    g = _gen(0)
    return [
        Case("ids=[1, 2, 3, 1, 2]", ([1, 2, 3, 1, 2],)),
        Case('bytes of "aaabdaaabac"', (list(b"aaabdaaabac"),)),
        Case("40 random ids in 0..4", (torch.randint(0, 5, (40,), generator=g).tolist(),)),
        Case("a single id", ([7],)),
    ]


def _merge_pair_reference(ids, a, b, new_id):
    """The BPE merge rule on a plain list, written independently of the solution: scan left to
    right and merge an (a, b) occurrence unless its first token was just consumed by the
    previous merge (tinyformer's trainer applies the same rule to its linked token cells)."""
    out, skip = [], False
    for i, token in enumerate(ids):
        if skip:
            skip = False
            continue
        if token == a and i + 1 < len(ids) and ids[i + 1] == b:
            out.append(new_id)
            skip = True
        else:
            out.append(token)
    return out


def _merge_pair_cases():
    g = _gen(1)
    return [
        Case('bytes of "aaabdaaabac", pair (97, 97)', (list(b"aaabdaaabac"), (97, 97), 256)),
        Case("[5, 5, 5, 5, 5], pair (5, 5)", ([5, 5, 5, 5, 5], (5, 5), 9)),
        Case("60 random ids in 0..2, pair (1, 2)", (torch.randint(0, 3, (60,), generator=g).tolist(), (1, 2), 3)),
        Case("pair absent", ([1, 2, 3], (3, 1), 4)),
    ]


# -------------------------------------------------------------------- positions


def _sinusoidal_cases():
    return [Case(f"T={T}, D={D}", (T, D)) for T, D in [(4, 8), (16, 32), (1, 2), (50, 64)]]


def _rope_cases():
    g = _gen(2)
    return [
        Case("x (T=6, d_head=8), positions 0..5", (_randn(g, 6, 8), torch.arange(6)), dtype=torch.float32),
        Case(
            "x (B=2, H=3, T=5, d_head=16), positions 0..4",
            (_randn(g, 2, 3, 5, 16), torch.arange(5)),
            dtype=torch.float32,
        ),
        Case(
            "x (B=2, T=4, d_head=8) float64, positions 3..6, theta=500",
            (_randn(g, 2, 4, 8, dtype=torch.float64), torch.arange(3, 7)),
            {"theta": 500.0},
            dtype=torch.float64,
        ),
    ]


def _tinyformer_rope(case):
    x, positions = case.args
    theta = case.kwargs.get("theta", 10000.0)
    return tf.RotaryPositionalEmbedding(x.shape[-1], int(positions.max()) + 1, theta)(x, positions)


# -------------------------------------------------------------------- attention


def _softmax_cases():
    g = _gen(3)
    return [
        Case("x (B=2, T=3, V=5), dim=-1", (_randn(g, 2, 3, 5),), dtype=torch.float32),
        Case("x (4, 6), dim=0", (_randn(g, 4, 6),), {"dim": 0}, dtype=torch.float32),
        Case("x (2, 3, 4) float64, dim=1", (_randn(g, 2, 3, 4, dtype=torch.float64),), {"dim": 1}, dtype=torch.float64),
        Case("large x (3, 5) ~ ±1000, dim=-1", (_randn(g, 3, 5, scale=1000.0),), dtype=torch.float32),
    ]


def _attention_cases():
    g = _gen(4)
    return [
        Case("q, k, v (T=4, d_head=8)", (_randn(g, 4, 8), _randn(g, 4, 8), _randn(g, 4, 8)), dtype=torch.float32),
        Case(
            "q (B=2, H=3, T_q=5, d_head=16), k (.., T_k=7, 16), v (.., 7, d_v=8)",
            (_randn(g, 2, 3, 5, 16), _randn(g, 2, 3, 7, 16), _randn(g, 2, 3, 7, 8)),
            dtype=torch.float32,
        ),
        Case(
            "q, k, v (B=2, H=2, T=6, d_head=4) float64",
            tuple(_randn(g, 2, 2, 6, 4, dtype=torch.float64) for _ in range(3)),
            dtype=torch.float64,
        ),
    ]


# ------------------------------------------------------------------------ masks


def _causal_mask_cases():
    return [
        Case("q_len=4", (4,)),
        Case("q_len=5, k_len=5", (5, 5)),
        Case("q_len=3, k_len=7 (non-square: queries are the last 3 positions)", (3, 7)),
        Case("q_len=1, k_len=6", (1, 6)),
    ]


def _masked_attention_cases():
    g = _gen(5)
    padding = torch.rand(3, 1, 1, 6, generator=g) < 0.6
    padding[..., 0] = True  # every query keeps at least one key
    return [
        Case(
            "q, k, v (B=2, H=3, T=5, d_head=8), causal mask (5, 5)",
            (_randn(g, 2, 3, 5, 8), _randn(g, 2, 3, 5, 8), _randn(g, 2, 3, 5, 8), tf.causal_mask(5)),
            dtype=torch.float32,
        ),
        Case(
            "q (B=2, H=2, T_q=3, d_head=4), k, v (.., T_k=7, 4) float64, causal mask (3, 7)",
            (
                _randn(g, 2, 2, 3, 4, dtype=torch.float64),
                _randn(g, 2, 2, 7, 4, dtype=torch.float64),
                _randn(g, 2, 2, 7, 4, dtype=torch.float64),
                tf.causal_mask(3, 7),
            ),
            dtype=torch.float64,
        ),
        Case(
            "q, k, v (B=3, H=2, T=6, d_head=8), padding mask (B, 1, 1, T)",
            (_randn(g, 3, 2, 6, 8), _randn(g, 3, 2, 6, 8), _randn(g, 3, 2, 6, 8), padding),
            dtype=torch.float32,
        ),
    ]


def _masked_attention_pytorch(case):
    q, k, v, mask = case.args
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# -------------------------------------------------------------------- multihead


def _seeded_module(make):
    """Build a tinyformer module under a fixed seed, and move every parameter off its
    initial value (norm weights start at exactly 1): a check should not pass by luck."""

    def build(case):
        torch.manual_seed(zlib.crc32(case.label.encode()))  # the same weights in every process
        module = make(*case.init)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return module

    return build


def _mha_cases():
    g = _gen(6)
    padding = torch.ones(1, 1, 1, 6, dtype=torch.bool)
    padding[..., 4:] = False
    return [
        Case("D=16, H=4; x (B=2, T=5, D), no mask", (_randn(g, 2, 5, 16),), init=(16, 4), dtype=torch.float32),
        Case(
            "D=24, H=3; x (B=3, T=4, D) float64, causal mask (T, T)",
            (_randn(g, 3, 4, 24, dtype=torch.float64), tf.causal_mask(4)),
            init=(24, 3),
            dtype=torch.float64,
        ),
        Case(
            "D=8, H=2; x (B=1, T=6, D), padding mask (B, 1, 1, T)",
            (_randn(g, 1, 6, 8), padding),
            init=(8, 2),
            dtype=torch.float32,
        ),
    ]


def _mha_pytorch(case, ref):
    """nn.MultiheadAttention with the same weights. Its boolean masks mean True = *blocked*."""
    x = case.args[0]
    mask = case.args[1] if len(case.args) > 1 else None
    D, H = case.init
    torch_mha = nn.MultiheadAttention(D, H, bias=False, batch_first=True, dtype=x.dtype)
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(torch.cat([ref.q_proj.weight, ref.k_proj.weight, ref.v_proj.weight]))
        torch_mha.out_proj.weight.copy_(ref.o_proj.weight)
    kwargs = {}
    if mask is not None and mask.dim() == 2:
        kwargs["attn_mask"] = ~mask
    elif mask is not None:
        kwargs["key_padding_mask"] = ~mask[:, 0, 0, :]
    return torch_mha(x, x, x, need_weights=False, **kwargs)[0]


def _mha_tinyformer(case, ref):
    mask = case.args[1] if len(case.args) > 1 else None
    return ref(case.args[0], mask=mask)


def _swiglu_cases():
    g = _gen(7)
    return [
        Case("D=16, d_ff=40; x (B=2, T=5, D)", (_randn(g, 2, 5, 16),), init=(16, 40), dtype=torch.float32),
        Case("D=8, d_ff=24; x (3, D) float64", (_randn(g, 3, 8, dtype=torch.float64),), init=(8, 24), dtype=torch.float64),
    ]


def _swiglu_pytorch(case, ref):
    x = case.args[0]
    return F.linear(F.silu(F.linear(x, ref.w1.weight)) * F.linear(x, ref.w3.weight), ref.w2.weight)


# ---------------------------------------------------------------- normalization


def _norm_cases():
    g = _gen(8)
    return [
        Case("D=8; x (B=2, T=5, D)", (_randn(g, 2, 5, 8) + 0.5,), init=(8,), dtype=torch.float32),
        Case("D=16; x (3, D) float64", (_randn(g, 3, 16, dtype=torch.float64) - 1.0,), init=(16,), dtype=torch.float64),
        Case("D=8; x (4, D) of tiny spread (variance ~ 1e-6 < eps)", (_randn(g, 4, 8, scale=1e-3),), init=(8,), dtype=torch.float32),
    ]


def _layer_norm_pytorch(case, ref):
    return F.layer_norm(case.args[0], ref.weight.shape, ref.weight, ref.bias, ref.eps)


def _rms_norm_pytorch(case, ref):
    return F.rms_norm(case.args[0], ref.weight.shape, ref.weight, ref.eps)


def _block_cases():
    g = _gen(9)
    return [
        Case("D=16, H=4, d_ff=32; x (B=2, T=5, D)", (_randn(g, 2, 5, 16),), init=(16, 4, 32), dtype=torch.float32),
        Case("D=8, H=2, d_ff=24; x (B=1, T=4, D) float64", (_randn(g, 1, 4, 8, dtype=torch.float64),), init=(8, 2, 24), dtype=torch.float64),
    ]


def _tinyformer_block(d_model, n_heads, d_ff):
    return tf.TransformerBlock(
        d_model, n_heads, d_ff, causal=True, norm="rms", norm_position="pre", ffn="swiglu", bias=False
    )


# --------------------------------------------------------------- language model


def _lm_cases():
    g = _gen(10)
    return [
        Case(
            "V=11, context 8, D=16, 2 layers, H=4, d_ff=32; ids (B=2, T=6)",
            (torch.randint(0, 11, (2, 6), generator=g),),
            init=(11, 8, 16, 2, 4, 32),
            dtype=torch.float32,
        ),
        Case(
            "V=7, context 5, D=8, 1 layer, H=2, d_ff=16; ids (B=3, T=5) float64",
            (torch.randint(0, 7, (3, 5), generator=g),),
            init=(7, 5, 8, 1, 2, 16),
            dtype=torch.float64,
        ),
    ]


def _tinyformer_lm(vocab_size, context_length, d_model, n_layers, n_heads, d_ff):
    config = tf.TransformerConfig(
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_ff=d_ff,
        positions="sinusoidal",
    )
    return tf.TransformerLM(config)


def _lm_names(case):
    ref = _tinyformer_lm(*case.init)
    names = {name: name for name, _ in ref.named_parameters()}
    names["token_embedding.weight"] = names.pop("embed.token_embedding.weight")
    return names


# --------------------------------------------------------------------- training


def _ce_cases():
    g = _gen(11)
    return [
        Case("logits (B=4, V=10), targets (B,)", (_randn(g, 4, 10), torch.randint(0, 10, (4,), generator=g)), dtype=torch.float32),
        Case(
            "logits (B=2, T=3, V=7) float64, targets (B, T)",
            (_randn(g, 2, 3, 7, dtype=torch.float64), torch.randint(0, 7, (2, 3), generator=g)),
            dtype=torch.float64,
        ),
        Case("large logits (3, 5) ~ ±1e4", (_randn(g, 3, 5, scale=1e4), torch.tensor([0, 2, 4])), dtype=torch.float32),
    ]


def _pytorch_ce(case):
    logits, targets = case.args
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


def _next_token_cases():
    g = _gen(12)
    return [
        Case("logits (B=2, T=6, V=10), ids (B, T)", (_randn(g, 2, 6, 10), torch.randint(0, 10, (2, 6), generator=g)), dtype=torch.float32),
        Case(
            "logits (B=3, T=4, V=5) float64, ids (B, T)",
            (_randn(g, 3, 4, 5, dtype=torch.float64), torch.randint(0, 5, (3, 4), generator=g)),
            dtype=torch.float64,
        ),
    ]


def _next_token_pytorch(case):
    logits, token_ids = case.args
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), token_ids[:, 1:].flatten())


def _adamw_cases():
    g = _gen(13)
    return [
        Case(
            "param (5,), 4 steps, lr=0.01, weight_decay=0.1",
            (_randn(g, 5), [_randn(g, 5) for _ in range(4)]),
            {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1},
            dtype=torch.float32,
        ),
        Case(
            "param (3, 4) float64, 6 steps, lr=0.05, betas=(0.8, 0.99), weight_decay=0.5",
            (_randn(g, 3, 4, dtype=torch.float64), [_randn(g, 3, 4, dtype=torch.float64) for _ in range(6)]),
            {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-8, "weight_decay": 0.5},
            dtype=torch.float64,
        ),
    ]


def _run_adamw(impl, case):
    """Call the reader's adamw_step once per gradient, feeding back its own state;
    the output is the parameter after every step, stacked: (steps, *param.shape)."""
    param, grads = case.args
    exp_avg, exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
    trajectory = []
    for step, grad in enumerate(grads, start=1):
        returned = impl(param, grad, exp_avg, exp_avg_sq, step, **case.kwargs)
        if not (isinstance(returned, tuple) and len(returned) == 3 and all(isinstance(t, torch.Tensor) for t in returned)):
            raise _WrongReturn(
                f"adamw_step returned {_describe(returned)}; expected a tuple of 3 tensors (param, exp_avg, exp_avg_sq)"
            )
        param, exp_avg, exp_avg_sq = returned
        trajectory.append(param)
    return torch.stack(trajectory)


def _optimizer_reference(make_optimizer):
    def reference(case):
        param, grads = case.args
        p = nn.Parameter(param.clone())
        opt = make_optimizer([p], **case.kwargs)
        trajectory = []
        for grad in grads:
            p.grad = grad.clone()
            opt.step()
            trajectory.append(p.detach().clone())
        return torch.stack(trajectory)

    return reference


# --------------------------------------------------------------------- sampling


def _top_k_cases():
    g = _gen(14)
    return [
        Case("logits (B=2, V=10), k=3", (_randn(g, 2, 10), 3), dtype=torch.float32),
        Case("logits (B=3, T=4, V=12) float64, k=5, τ=0.7", (_randn(g, 3, 4, 12, dtype=torch.float64), 5), {"temperature": 0.7}, dtype=torch.float64),
        Case("logits (1, V=6), k=6 (keeps everything)", (_randn(g, 1, 6), 6), dtype=torch.float32),
    ]


def _top_p_cases():
    g = _gen(15)
    return [
        Case("logits (B=2, V=10), p=0.9", (_randn(g, 2, 10, scale=2.0), 0.9), dtype=torch.float32),
        Case("logits (B=3, V=8) float64, p=0.5, τ=1.3", (_randn(g, 3, 8, dtype=torch.float64, scale=2.0), 0.5), {"temperature": 1.3}, dtype=torch.float64),
        Case("logits [5, 0, 0, 0], p=0.3 (the top token alone crosses p)", (torch.tensor([[5.0, 0.0, 0.0, 0.0]]), 0.3), dtype=torch.float32),
    ]


def _tinyformer_sampling(which):
    def reference(case):
        logits, knob = case.args
        return tf.next_token_distribution(logits, case.kwargs.get("temperature", 1.0), **{which: knob})

    return reference


# ------------------------------------------------------------------- the table

_SAMPLING_ATOL = {torch.float32: 1e-6, torch.float64: 1e-6}  # tinyformer samples in float32
_FLOAT32_TABLES = {torch.float32: 1e-5, torch.float64: 1e-6}  # tinyformer keeps cos/sin tables in float32
_DEEP = {torch.float32: 1e-4, torch.float64: 1e-6}  # many layers; sinusoidal table in float32

COMPONENTS: list[Component] = [
    # --- tokens
    Component(
        "count_pairs", "tokens", "function", _count_pairs_cases,
        references={"collections.Counter": lambda case: dict(Counter(zip(case.args[0], case.args[0][1:])))},
        mistakes=[
            Mistake(
                "the last pair is not counted",
                "a sequence of T ids has T - 1 adjacent pairs: loop over range(len(ids) - 1)",
                wrong.count_pairs_misses_last_pair,
            ),
        ],
    ),
    Component(
        "merge_pair", "tokens", "function", _merge_pair_cases,
        references={"tinyformer": lambda case: _merge_pair_reference(case.args[0], *case.args[1], case.args[2])},
        mistakes=[
            Mistake(
                "only the first occurrence is merged",
                "keep scanning after a merge: every non-overlapping occurrence, left to right",
                wrong.merge_pair_first_only,
            ),
        ],
    ),
    # --- positions
    Component(
        "sinusoidal_positions", "positions", "function", _sinusoidal_cases,
        references={"tinyformer": lambda case: tf.sinusoidal_positional_encoding(*case.args)},
        mistakes=[
            Mistake(
                "positions off by one",
                "the first token is at position 0: torch.arange(T), not arange(1, T + 1)",
                wrong.sinusoidal_positions_off_by_one,
            ),
            Mistake(
                "sines and cosines in halves instead of interleaved",
                "sin goes in the even columns (0::2), cos in the odd ones (1::2)",
                wrong.sinusoidal_positions_halves,
            ),
        ],
        atol={torch.float32: 1e-6},
    ),
    Component(
        "rope", "positions", "function", _rope_cases,
        references={"tinyformer": _tinyformer_rope},
        mistakes=[
            Mistake(
                "RoPE on halves instead of adjacent pairs",
                "the book rotates (x[2i], x[2i+1]): x[..., 0::2] and x[..., 1::2], not the two halves of d_head",
                wrong.rope_halves,
            ),
            Mistake(
                "positions off by one",
                "rotate by the token's own position p (the first token by 0)",
                wrong.rope_positions_off_by_one,
            ),
        ],
        atol=_FLOAT32_TABLES,
    ),
    # --- attention
    Component(
        "softmax", "attention", "function", _softmax_cases,
        references={
            "tinyformer": _call(tf.softmax),
            "PyTorch": lambda case: torch.softmax(case.args[0], dim=case.kwargs.get("dim", -1)),
        },
        mistakes=[
            Mistake(
                "softmax without subtracting the max (overflows at large inputs)",
                "subtract x.amax(dim, keepdim=True) before exp()",
                wrong.softmax_no_max_shift,
            ),
            Mistake(
                "softmax over the wrong axis",
                "normalise along the `dim` you are given",
                wrong.softmax_ignores_dim,
            ),
        ],
    ),
    Component(
        "scaled_dot_product_attention", "attention", "function", _attention_cases,
        references={"tinyformer": _call(tf.scaled_dot_product_attention), "PyTorch": _call(F.scaled_dot_product_attention)},
        mistakes=[
            Mistake(
                "scores not divided by √d_head",
                "divide q @ k^T by math.sqrt(q.shape[-1])",
                wrong.attention_unscaled,
            ),
            Mistake(
                "softmax over the wrong axis",
                "each query's row of scores is one distribution over the keys: softmax(dim=-1)",
                wrong.attention_softmax_over_queries,
            ),
        ],
    ),
    # --- masks
    Component(
        "causal_mask", "masks", "function", _causal_mask_cases,
        references={
            "tinyformer": _call(tf.causal_mask),
            "torch.tril": lambda case: torch.ones(case.args[0], case.args[-1]).tril(case.args[-1] - case.args[0]).bool(),
        },
        mistakes=[
            Mistake(
                "mask polarity inverted",
                "True means *may attend* here (as in F.scaled_dot_product_attention); "
                "nn.MultiheadAttention uses the opposite",
                wrong.causal_mask_inverted,
            ),
            Mistake(
                "the diagonal is masked",
                "a token may attend to itself: j <= i, not j < i",
                wrong.causal_mask_no_diagonal,
            ),
            Mistake(
                "non-square mask not shifted",
                "with k_len > q_len the queries are the last q_len positions: shift the diagonal by k_len - q_len",
                wrong.causal_mask_unshifted,
            ),
        ],
        out_dtype=torch.bool,
    ),
    Component(
        "masked_attention", "masks", "function", _masked_attention_cases,
        references={"tinyformer": _call(tf.scaled_dot_product_attention), "PyTorch": _masked_attention_pytorch},
        mistakes=[
            Mistake(
                "mask polarity inverted",
                "mask is True where attention is *allowed*: fill ~mask with -inf",
                wrong.masked_attention_inverted,
            ),
            Mistake(
                "mask applied after softmax",
                "set the scores to -inf before the softmax, so the allowed weights still sum to 1",
                wrong.masked_attention_after_softmax,
            ),
        ],
    ),
    # --- multihead
    Component(
        "MultiHeadAttention", "multihead", "class", _mha_cases,
        references={"tinyformer": _mha_tinyformer, "PyTorch nn.MultiheadAttention": _mha_pytorch},
        mistakes=[
            Mistake(
                "heads split with view(B, H, T, d_head)",
                "view as (B, T, H, d_head), then transpose(1, 2): each head must get its own d_head columns "
                "of every token",
                wrong.MultiHeadAttentionWrongSplit,
            ),
            Mistake(
                "scores divided by √D instead of √d_head",
                "each head's dot products have d_head terms: divide by math.sqrt(d_head)",
                wrong.MultiHeadAttentionScaledByD,
            ),
        ],
        reference_module=_seeded_module(lambda D, H: tf.MultiHeadAttention(D, H)),
    ),
    Component(
        "SwiGLU", "multihead", "class", _swiglu_cases,
        references={"tinyformer": None, "PyTorch (F.linear, F.silu)": _swiglu_pytorch},
        mistakes=[
            Mistake(
                "SwiGLU gate and value swapped",
                "silu goes on the gate w1(x); the value w3(x) is left linear",
                wrong.SwiGLUSwapped,
            ),
        ],
        reference_module=_seeded_module(lambda D, d_ff: tf.SwiGLU(D, d_ff)),
    ),
    # --- normalization
    Component(
        "LayerNorm", "normalization", "class", _norm_cases,
        references={"tinyformer": None, "PyTorch F.layer_norm": _layer_norm_pytorch},
        mistakes=[
            Mistake(
                "LayerNorm with the unbiased variance",
                "x.var() divides by D - 1; LayerNorm divides by D: use ((x - mean)**2).mean(-1) "
                "or x.var(-1, unbiased=False)",
                wrong.LayerNormUnbiased,
            ),
            Mistake(
                "LayerNorm without ε inside the root",
                "sqrt(var + eps), not sqrt(var) + eps",
                wrong.LayerNormEpsOutsideRoot,
            ),
        ],
        reference_module=_seeded_module(lambda D: tf.LayerNorm(D)),
    ),
    Component(
        "RMSNorm", "normalization", "class", _norm_cases,
        references={"tinyformer": None, "PyTorch F.rms_norm": _rms_norm_pytorch},
        mistakes=[
            Mistake(
                "RMSNorm subtracting the mean",
                "RMSNorm divides x itself by its root mean square; it does not centre x",
                wrong.RMSNormSubtractsMean,
            ),
        ],
        reference_module=_seeded_module(lambda D: tf.RMSNorm(D)),
    ),
    Component(
        "TransformerBlock", "normalization", "class", _block_cases,
        references={"tinyformer": None},
        mistakes=[
            Mistake(
                "post-norm instead of pre-norm",
                "normalise the sublayer's input: x + f(norm(x)), not norm(x + f(x))",
                wrong.TransformerBlockPostNorm,
            ),
            Mistake(
                "no causal mask in the block",
                "pass a causal mask to self-attention: a decoder must not see later tokens",
                wrong.TransformerBlockNoCausalMask,
            ),
        ],
        atol=_DEEP,
        reference_module=_seeded_module(_tinyformer_block),
    ),
    # --- language model
    Component(
        "TransformerLM", "language_model", "class", _lm_cases,
        references={"tinyformer": None},
        mistakes=[
            Mistake(
                "no final norm before the LM head",
                "pre-norm blocks leave the residual stream unnormalised: apply final_norm before lm_head",
                wrong.TransformerLMNoFinalNorm,
            ),
            Mistake(
                "positions not added",
                "add sinusoidal_positions(...)[:T] to the token embeddings",
                wrong.TransformerLMNoPositions,
            ),
        ],
        atol=_DEEP,
        reference_module=_seeded_module(_tinyformer_lm),
        param_names=_lm_names,
    ),
    # --- training
    Component(
        "cross_entropy", "training", "function", _ce_cases,
        references={"tinyformer": _call(tf.cross_entropy), "PyTorch F.cross_entropy": _pytorch_ce},
        mistakes=[
            Mistake(
                "cross-entropy without the log-sum-exp shift (overflows at large logits)",
                "logsumexp(x) = m + log(sum(exp(x - m))) with m = max(x)",
                wrong.cross_entropy_no_shift,
            ),
            Mistake(
                "log of softmax (underflows to log 0 at large logits)",
                "compute log-probabilities as x_y - logsumexp(x), never log(softmax(x))",
                wrong.cross_entropy_log_of_softmax,
            ),
        ],
    ),
    Component(
        "next_token_loss", "training", "function", _next_token_cases,
        references={
            "tinyformer": lambda case: tf.cross_entropy(case.args[0][:, :-1], case.args[1][:, 1:]),
            "PyTorch F.cross_entropy": _next_token_pytorch,
        },
        mistakes=[
            Mistake(
                "targets not shifted",
                "position t predicts token t + 1: logits[:, :-1] against token_ids[:, 1:]",
                wrong.next_token_loss_unshifted,
            ),
            Mistake(
                "targets shifted the wrong way",
                "logits[:, :-1] against token_ids[:, 1:], not logits[:, 1:] against token_ids[:, :-1]",
                wrong.next_token_loss_shifted_backwards,
            ),
        ],
    ),
    Component(
        "adamw_step", "training", "function", _adamw_cases,
        references={
            "tinyformer AdamW": _optimizer_reference(tf.AdamW),
            "PyTorch torch.optim.AdamW": _optimizer_reference(torch.optim.AdamW),
        },
        mistakes=[
            Mistake(
                "AdamW folding decay into the gradient (L2, i.e. Adam, not decoupled)",
                "decay the parameter itself, param * (1 - lr * weight_decay), and leave grad alone",
                wrong.adamw_step_l2,
            ),
            Mistake(
                "Adam without bias correction",
                "divide m by 1 - b1**step and v by 1 - b2**step (step counts from 1)",
                wrong.adamw_step_no_bias_correction,
            ),
        ],
        atol={torch.float32: 1e-6, torch.float64: 1e-10},
        run=_run_adamw,
    ),
    # --- sampling
    Component(
        "top_k_distribution", "sampling", "function", _top_k_cases,
        references={"tinyformer": _tinyformer_sampling("top_k")},
        mistakes=[
            Mistake(
                "top-k not renormalised",
                "after zeroing the others, divide the k kept probabilities by their sum "
                "(or mask the logits with -inf before the softmax)",
                wrong.top_k_not_renormalised,
            ),
        ],
        atol=_SAMPLING_ATOL,
    ),
    Component(
        "top_p_distribution", "sampling", "function", _top_p_cases,
        references={"tinyformer": _tinyformer_sampling("top_p")},
        mistakes=[
            Mistake(
                "top-p keeping the token that crosses p out instead of in",
                "keep a token when the mass of the tokens *before* it is < p: cumsum - probs < p",
                wrong.top_p_crossing_token_out,
            ),
            Mistake(
                "top-p not renormalised",
                "divide the kept probabilities by their sum",
                wrong.top_p_not_renormalised,
            ),
        ],
        atol=_SAMPLING_ATOL,
    ),
]

BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}


class _WrongReturn(Exception):
    """The implementation returned something of the wrong kind (raised by a custom runner)."""


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}" if value is not None else "None"
