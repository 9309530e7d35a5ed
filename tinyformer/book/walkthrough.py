"""The running example: one 4-character input carried from text to the predicted next token.

The numbers of the reading group's numeric walkthrough (T = 4, d_model = 8, 2 heads, FFN
width 16, vocabulary 20) in the ``walkthrough`` preset, with its weights drawn from a fixed seed, reading a fixed word.
:func:`walkthrough` returns every intermediate tensor by name, in the order the model
computes them, so every chapter can pick up the same numbers where the previous one
left them::

    from tinyformer.book.walkthrough import walkthrough
    w = walkthrough()
    w.show("block0.weights")        # (H, T, T) attention weights, rounded
    w.block(0).scores               # attribute access inside a block
    w.next_char                     # what the (untrained) model predicts after the word

How the values are obtained: the model's own submodules are called one step at a
time (``attn.q_proj(h)``, ``block.norm1(...)``, ``model.lm_head(...)``), and the
model's ordinary forward pass is run as well, with forward hooks recording what
each submodule really received and returned. Every step is checked against that
recording, and the logits against ``model(ids)``; a mismatch raises at once, so the
walkthrough can never drift from the code it describes. Inside attention, where
no submodule exposes the scores, the step computes ``q @ k^T / sqrt(d_head)`` and
is then checked through the weights the attention module returns.

The batch dimension (B = 1) is dropped from every stored tensor: ``logits`` is
``(T, V) = (4, 20)`` as in the reading group's walkthrough.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..attention import causal_mask
from ..layers import FeedForward, SwiGLU, gelu, relu, silu, softmax
from ..model import TransformerConfig, TransformerLM, preset
from ..tokenizer import CharTokenizer
from .hooks import CallRecorder

__all__ = [
    "KJV_TOP20_CHARS",
    "WALKTHROUGH_TEXT",
    "WALKTHROUGH_SEED",
    "walkthrough_tokenizer",
    "Step",
    "Walkthrough",
    "walkthrough",
    "format_tensor",
]

# The 20 most frequent characters of the book's corpus (tinyformer.data.load_kjv(),
# lower-cased), most frequent first; tests/test_walkthrough.py recounts them. With
# the preset's vocabulary of 20 they make a character tokenizer for real text.
KJV_TOP20_CHARS = " ethaonisrdlfum,wygc"
WALKTHROUGH_TEXT = "lord"  # four characters, all in the 20: T = 4
WALKTHROUGH_SEED = 0


def walkthrough_tokenizer() -> CharTokenizer:
    """A character tokenizer over :data:`KJV_TOP20_CHARS`, sorted so ids follow the alphabet."""
    return CharTokenizer(sorted(KJV_TOP20_CHARS))


@dataclass(frozen=True)
class Step:
    """One intermediate value: its name, the tensor (batch dim dropped), its shape in
    the book's notation, and one line saying what it is."""

    name: str
    value: torch.Tensor
    notation: str
    what: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


def format_tensor(t: torch.Tensor, decimals: int = 3) -> str:
    """A tensor as a small rounded array: no ``tensor(...)`` wrapper, no ``grad_fn``."""
    a = t.detach().cpu()
    if a.dtype == torch.bool:
        a = a.to(torch.int64)
    a = a.numpy()
    if a.ndim == 0:
        return str(a.item() if a.dtype.kind in "iu" else round(float(a), decimals))
    if a.dtype.kind in "iu":
        return np.array2string(a, separator=" ")
    a = np.round(a.astype(np.float64), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return np.array2string(a, precision=decimals, floatmode="fixed", suppress_small=True,
                           max_line_width=100, separator=" ")


class _BlockView:
    """The steps of one block, by their short names: ``w.block(0).scores``."""

    def __init__(self, walk: "Walkthrough", index: int):
        self._walk, self._prefix = walk, f"block{index}."

    def names(self) -> list[str]:
        return [n[len(self._prefix):] for n in self._walk if n.startswith(self._prefix)]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._walk[self._prefix + name]

    def __getattr__(self, name: str) -> torch.Tensor:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"block has no step {name!r}; its steps: {self.names()}") from None


class Walkthrough(Mapping):
    """Every intermediate tensor of one forward pass, by name, in computation order.

    A read-only mapping ``name -> tensor``; top-level steps are also attributes
    (``w.logits``), a block's steps are ``w["block0.q"]`` or ``w.block(0).q``.
    ``model``, ``config``, ``tokenizer``, ``text`` and ``seed`` say where the values came from.
    """

    def __init__(self, steps: list[Step], model: TransformerLM, tokenizer: CharTokenizer | None, text: str | None,
                 seed: int):
        self._steps = {s.name: s for s in steps}
        self.model, self.config, self.tokenizer, self.text, self.seed = model, model.config, tokenizer, text, seed

    # Mapping protocol
    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._steps[name].value
        except KeyError:
            raise KeyError(f"no step {name!r}; the steps are: {list(self._steps)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __getattr__(self, name: str) -> torch.Tensor:
        if name.startswith("_"):
            raise AttributeError(name)
        steps = self.__dict__.get("_steps", {})
        if name in steps:
            return steps[name].value
        raise AttributeError(f"no step {name!r}; the steps are: {list(steps)}")

    def step(self, name: str) -> Step:
        self[name]  # the KeyError that lists the names
        return self._steps[name]

    @property
    def steps(self) -> list[Step]:
        return list(self._steps.values())

    def block(self, index: int) -> _BlockView:
        if not 0 <= index < self.config.n_layers:
            raise IndexError(f"block {index} does not exist: the model has blocks 0..{self.config.n_layers - 1}")
        return _BlockView(self, index)

    @property
    def tokens(self) -> list[str] | None:
        """The input as characters (None when built from raw ids)."""
        return None if self.tokenizer is None else [self.tokenizer.decode([i]) for i in self.token_ids.tolist()]

    @property
    def next_token(self) -> int:
        """The argmax at the last position: the model's guess for the token after the input."""
        return int(self["predictions"][-1])

    @property
    def next_char(self) -> str | None:
        return None if self.tokenizer is None else self.tokenizer.decode([self.next_token])

    def format(self, name: str, decimals: int = 3) -> str:
        s = self.step(name)
        return f"{name}  {s.notation} = {s.shape}: {s.what}\n{format_tensor(s.value, decimals)}"

    def show(self, *names: str, decimals: int = 3) -> None:
        """Print steps small enough to read: rounded, no ``grad_fn``, with their shape."""
        print("\n\n".join(self.format(n, decimals) for n in names))

    def summary(self) -> str:
        """One line per step: name, shape in symbols and numbers, what it is."""
        w_name = max(len(s.name) for s in self.steps)
        w_sym = max(len(s.notation) for s in self.steps)
        w_num = max(len(str(s.shape)) for s in self.steps)
        return "\n".join(
            f"{s.name:<{w_name}}  {s.notation:<{w_sym}}  {str(s.shape):<{w_num}}  {s.what}" for s in self.steps
        )

    def __repr__(self) -> str:
        return f"Walkthrough({len(self)} steps, text={self.text!r}, seed={self.seed})"


_ACTIVATION_NAMES = {"relu": "ReLU", "gelu": "GELU"}


def _check(name: str, ours: torch.Tensor, real: torch.Tensor) -> None:
    """Raise if a step differs from what the model's own forward pass computed."""
    if ours.shape != real.shape or not torch.allclose(ours, real, rtol=1e-5, atol=1e-6, equal_nan=True):
        raise RuntimeError(
            f"walkthrough step {name!r} differs from the model's own forward pass "
            f"(shapes {tuple(ours.shape)} vs {tuple(real.shape)}): the walkthrough no longer follows the code"
        )


@torch.no_grad()
def walkthrough(
    text: str | None = WALKTHROUGH_TEXT,
    *,
    token_ids: torch.Tensor | list[int] | None = None,
    config: TransformerConfig | None = None,
    seed: int = WALKTHROUGH_SEED,
    model: TransformerLM | None = None,
) -> Walkthrough:
    """Run the running example and return every intermediate tensor by name.

    Defaults: the ``walkthrough`` preset's model with weights from ``seed`` and the
    word ``"lord"`` under :func:`walkthrough_tokenizer`. ``token_ids`` (a list or a
    ``(T,)`` tensor) replaces the text; ``config`` another configuration (any
    :class:`~tinyformer.TransformerLM` choice: RoPE, RMSNorm, SwiGLU, grouped-query
    attention); ``model`` an existing model instead of a freshly seeded one. The
    global random state is left untouched.
    """
    if model is not None:
        if not isinstance(model, TransformerLM):
            raise TypeError(f"walkthrough needs a tinyformer.TransformerLM, got {type(model).__name__}")
        if config is not None:
            raise ValueError("pass either model= or config=, not both")
        config = model.config
    config = config or preset("walkthrough")
    if config.attn_impl != "scratch":
        raise ValueError(
            f"attn_impl={config.attn_impl!r} never materialises the attention weights the walkthrough shows; "
            "use attn_impl='scratch'"
        )
    tokenizer = None
    if token_ids is None:
        if text is None:
            raise ValueError("give text or token_ids")
        tokenizer = walkthrough_tokenizer()
        if tokenizer.vocab_size > config.vocab_size:
            raise ValueError(
                f"the walkthrough text needs a vocabulary of {tokenizer.vocab_size}, but vocab_size is "
                f"{config.vocab_size}; pass token_ids instead"
            )
        token_ids = tokenizer.encode(text)
    else:
        text = None
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"token_ids must be one non-empty sequence (T,), got shape {tuple(ids.shape)}")
    ids = ids[None]  # (1, T): a batch of one
    T = ids.shape[1]
    if T > config.context_length:
        raise ValueError(f"input of {T} tokens is longer than context_length={config.context_length}")
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TransformerLM(config)
    model.eval()

    # The model's own forward pass, with every submodule's inputs and outputs recorded.
    with CallRecorder(model) as recorder:
        real_logits = model(ids)

    steps: list[Step] = []

    def add(name: str, value: torch.Tensor, notation: str, what: str, real: torch.Tensor | None = None,
            batched: bool = True):
        """Record a step (dropping the batch of one) after checking it against the real forward pass."""
        if real is not None:
            _check(name, value, real)
        value = value.detach()
        steps.append(Step(name, value[0] if batched else value, notation, what))
        return value

    add("token_ids", ids, "(T,)", "the input, one id per character")
    embed = model.embed
    x = add("token_embeddings", embed.token_embedding(ids), "(T, D)", "row token_id of the embedding table",
            recorder.output("embed.token_embedding"))
    positions = torch.arange(T)
    add("positions", positions, "(T,)", "each token's position", batched=False)
    if embed.position is not None:
        pe = add("position_encoding", embed.position(positions), "(T, D)",
                 f"{type(embed.position).__name__}: one vector per position", recorder.output("embed.position"),
                 batched=False)
        x = x + pe
        add("x0", x, "(T, D)", "token embedding + position: what the first block reads", recorder.output("embed"))
    else:
        how = "RoPE rotates q and k inside attention instead" if embed.rope is not None else "no positions"
        add("x0", x, "(T, D)", f"the token embeddings ({how})", recorder.output("embed"))

    rope_call = 0
    for i, block in enumerate(model.blocks):
        p, name = f"block{i}.", f"blocks.{i}"
        attn = block.self_attn
        pre = block.norm_position == "pre"
        norm_kind = type(block.norm1).__name__
        _check(p + "input", x, recorder.input(name))
        h = x
        if pre:
            h = add(p + "norm1", block.norm1(x), "(T, D)", f"{norm_kind} of the block input (pre-norm)",
                    recorder.output(f"{name}.norm1"))
        H, Hkv, Dh = attn.n_heads, attn.n_kv_heads, attn.d_head
        q = add(p + "q", attn.q_proj(h), "(T, D)", "queries: what each token looks for",
                recorder.output(f"{name}.self_attn.q_proj"))
        k = add(p + "k", attn.k_proj(h), "(T, Hkv*d_head)" if Hkv != H else "(T, D)",
                "keys: what each token offers to be matched on", recorder.output(f"{name}.self_attn.k_proj"))
        v = add(p + "v", attn.v_proj(h), "(T, Hkv*d_head)" if Hkv != H else "(T, D)",
                "values: what each token hands over", recorder.output(f"{name}.self_attn.v_proj"))
        kv_heads = "(Hkv, T, d_head)" if Hkv != H else "(H, T, d_head)"
        qh = add(p + "q_heads", attn._split_heads(q, H), "(H, T, d_head)", "queries split into heads")
        kh = add(p + "k_heads", attn._split_heads(k, Hkv), kv_heads, "keys split into heads")
        vh = add(p + "v_heads", attn._split_heads(v, Hkv), kv_heads, "values split into heads")
        if attn.rope is not None:
            qh = add(p + "q_rotated", attn.rope(qh, positions), "(H, T, d_head)", "queries rotated by RoPE",
                     recorder.output("embed.rope", rope_call))
            kh = add(p + "k_rotated", attn.rope(kh, positions), kv_heads, "keys rotated by RoPE",
                     recorder.output("embed.rope", rope_call + 1))
            rope_call += 2
        if Hkv != H:  # grouped-query attention: query head j reads key/value head j // group
            kh, vh = kh.repeat_interleave(H // Hkv, dim=1), vh.repeat_interleave(H // Hkv, dim=1)
        # No submodule returns the scores; the weights check below covers this line.
        scores = add(p + "scores", qh @ kh.transpose(-2, -1) / math.sqrt(Dh), "(H, T, T)",
                     "q . k / sqrt(d_head) for every query (row) and key (column)")
        real_out, real_weights = recorder.output(f"{name}.self_attn")
        if attn.causal:
            mask = add(p + "mask", causal_mask(T), "(T, T)", "causal mask: 1 = may attend (key <= query)",
                       batched=False)
            scores = add(p + "masked_scores", scores.masked_fill(~mask, float("-inf")), "(H, T, T)",
                         "scores with future keys set to -inf")
        weights = add(p + "weights", softmax(scores, dim=-1), "(H, T, T)",
                      "softmax over keys: each row sums to 1", real_weights)
        heads = add(p + "head_outputs", weights @ vh, "(H, T, d_head)", "each head's weighted sum of values")
        concat = add(p + "concat", heads.transpose(1, 2).reshape(1, T, H * Dh), "(T, D)",
                     "heads side by side again", recorder.input(f"{name}.self_attn.o_proj"))
        attn_out = add(p + "attn_out", attn.o_proj(concat), "(T, D)", "W_O mixes the heads: the attention output",
                       real_out)
        x = add(p + "residual1", x + attn_out, "(T, D)", "residual: the block input plus the attention output",
                recorder.input(f"{name}.norm2" if pre else f"{name}.norm1"))
        if not pre:
            x = add(p + "norm1", block.norm1(x), "(T, D)", f"{norm_kind} of the residual sum (post-norm)",
                    recorder.output(f"{name}.norm1"))
        h = x
        if pre:
            h = add(p + "norm2", block.norm2(x), "(T, D)", f"{norm_kind} before the feed-forward (pre-norm)",
                    recorder.output(f"{name}.norm2"))
        ffn = block.ffn
        if isinstance(ffn, SwiGLU):
            gate = add(p + "ffn_gate", ffn.w1(h), "(T, F)", "gate branch W1 x", recorder.output(f"{name}.ffn.w1"))
            gate_act = add(p + "ffn_gate_activated", silu(gate), "(T, F)", "SiLU(W1 x)")
            up = add(p + "ffn_up", ffn.w3(h), "(T, F)", "value branch W3 x", recorder.output(f"{name}.ffn.w3"))
            hidden = add(p + "ffn_hidden", gate_act * up, "(T, F)", "SiLU(W1 x) * W3 x",
                         recorder.input(f"{name}.ffn.w2"))
        elif isinstance(ffn, FeedForward):
            pre_act = add(p + "ffn_pre_activation", ffn.w1(h), "(T, F)", "W1 x + b1, before the activation",
                          recorder.output(f"{name}.ffn.w1"))
            act = relu if ffn.activation == "relu" else gelu
            hidden = add(p + "ffn_hidden", act(pre_act), "(T, F)", f"{_ACTIVATION_NAMES[ffn.activation]}(W1 x + b1)",
                         recorder.input(f"{name}.ffn.w2"))
        else:
            raise TypeError(f"walkthrough does not know the feed-forward {type(ffn).__name__}")
        ffn_out = add(p + "ffn_out", ffn.w2(hidden), "(T, D)", "W2 hidden (+ b2): back to d_model",
                      recorder.output(f"{name}.ffn"))
        x = add(p + "residual2", x + ffn_out, "(T, D)", "residual: plus the feed-forward output")
        if not pre:
            x = add(p + "norm2", block.norm2(x), "(T, D)", f"{norm_kind} of the residual sum (post-norm)",
                    recorder.output(f"{name}.norm2"))
        _check(p + "output", x, recorder.output(name)[0])  # blocks return (x, weights)

    if not isinstance(model.final_norm, nn.Identity):
        x = add("final_norm", model.final_norm(x), "(T, D)",
                f"{type(model.final_norm).__name__} after the last block (pre-norm models)",
                recorder.output("final_norm"))
    logits = add("logits", model.lm_head(x), "(T, V)", "one score per vocabulary entry, at every position",
                 real_logits)
    probs = add("probs", softmax(logits, dim=-1), "(T, V)", "softmax over the vocabulary: each row sums to 1")
    add("predictions", probs.argmax(dim=-1), "(T,)",
        "argmax at each position: the guess for the token after it (the last one is the next token)")
    return Walkthrough(steps, model, tokenizer, text, seed)

