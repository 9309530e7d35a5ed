"""Data-flow diagrams drawn from the modules themselves.

Each diagram runs the model once on an input with forward hooks on every submodule
(:func:`trace`), and draws what it recorded: which submodules ran, in which order,
what class each one is (LayerNorm or RMSNorm, ReLU FFN or SwiGLU, causal or not),
and the shape of every tensor that passed between them. Arrows are labelled in the
book's notation, (B, T, D), (B, H, T, T), ..., with the running example's numbers
in smaller type; a symbol whose size disagrees with the recorded tensor raises, so
the picture cannot drift from the code. The alt text is written from the same
records.

    fig, alt = block_diagram()                               # the walkthrough model's block
    fig, alt = block_diagram(norm_position="pre", highlight="attention")
    fig, alt = lm_diagram(model, token_ids, highlight="lm_head")

Every ``*_diagram`` has a ``*_flow`` twin returning the recorded :class:`Flow`
(nodes, edges, shapes) without drawing. Figures are 4 inches wide with text of at
least 10 pt, so shrunk to a 390 px phone screen the smallest label stays above 9 pt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Circle, FancyBboxPatch
from torch import nn

from ..attention import MultiHeadAttention
from ..layers import FeedForward, SwiGLU
from ..model import Decoder, Encoder, EncoderDecoder, TransformerConfig, TransformerLM, preset
from .hooks import Call, CallRecorder
from .plots import BLUE, GREY, use_book_style
from .walkthrough import walkthrough, walkthrough_tokenizer

__all__ = [
    "Call",
    "trace",
    "Node",
    "Edge",
    "Flow",
    "draw",
    "block_flow",
    "block_diagram",
    "lm_flow",
    "lm_diagram",
    "qkv_flow",
    "qkv_diagram",
    "heads_flow",
    "heads_diagram",
    "encoder_decoder_flow",
    "encoder_decoder_diagram",
    "min_font_px",
    "FIG_WIDTH",
]

FIG_WIDTH = 4.0  # inches; at 144 dpi 576 px, so a 390 px screen scales by 0.68
TITLE_PT, DETAIL_PT, SHAPE_PT, SMALL_PT = 12, 10.5, 11, 10
HIGHLIGHT_FILL, BOX_FILL, EDGE = "#dbe8fa", "#f7f7f7", "#333333"  # a tint of the theme's link blue


# -- recording ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def trace(model: nn.Module, *args, **kwargs) -> dict[str, list[Call]]:
    """Run ``model(*args, **kwargs)`` once in eval mode; return every submodule call by qualified name.

    Calls are numbered in the order they *started*, so a parent comes before its children
    and siblings in the order the code ran them (:class:`~tinyformer.book.hooks.CallRecorder`).
    """
    was_training = model.training
    model.eval()
    try:
        with CallRecorder(model) as recorder:
            model(*args, **kwargs)
    finally:
        model.train(was_training)
    return recorder.calls


# -- the flow: what is drawn ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """A box (``kind="box"``), a residual add (``"add"``) or an input/output label (``"io"``)."""

    key: str
    title: str
    detail: str = ""
    kind: str = "box"
    part: str | None = None  # the name ``highlight=`` uses
    col: float = 0.5  # centre, as a fraction of the width
    width: float = 0.72  # as a fraction of the width
    alt: str = ""  # how the alt text names it, when the title alone is ambiguous


@dataclass
class Edge:
    """An arrow from ``src`` to ``dst`` carrying a tensor of ``shape``, written as ``notation``."""

    src: str
    dst: str
    notation: tuple[str, ...] | None = None
    shape: tuple[int, ...] | None = None
    kind: str = "down"  # down (bottom to top), side (right edge to left edge), skip (residual bypass)
    show_label: bool = True

    def label(self) -> tuple[str, str]:
        if self.notation is None:
            return "", ""
        return "(" + ", ".join(self.notation) + ")", "(" + ", ".join(str(s) for s in self.shape) + ")"


@dataclass
class Flow:
    """Everything a diagram shows, recorded from one run of the modules."""

    title: str
    source: str  # which module it was drawn from
    rows: list[list[Node]]
    edges: list[Edge]
    sizes: dict[str, int]
    groups: list[tuple[str, str, str]] = field(default_factory=list)  # (first key, last key, label): "N x" frames

    def nodes(self) -> dict[str, Node]:
        return {n.key: n for row in self.rows for n in row}

    def parts(self) -> list[str]:
        return sorted({n.part for row in self.rows for n in row if n.part})

    def alt_text(self, highlight: str | None = None) -> str:
        """A sentence per arrow, in drawing order, from the same records as the picture."""
        nodes = self.nodes()

        def name(key):
            n = nodes[key]
            if n.alt:
                return n.alt
            text = n.title.replace("-\n", "-").replace("\n", " ")
            text = text.removeprefix("to ")  # an exit label ("to W_O") reads "... passes ... to W_O"
            return f"{text} ({n.detail.replace(chr(10), ' ')})" if n.detail and n.kind == "box" else text

        sizes = ", ".join(f"{k} = {v}" for k, v in self.sizes.items())
        lines = [f"Data-flow diagram: {self.title}, drawn from {self.source}. Sizes: {sizes}."]
        for e in self.edges:
            sym, num = e.label()
            shape = f" a tensor of shape {sym} = {num}" if sym else ""
            if e.kind == "skip":
                lines.append(f"A residual connection carries{shape or ' the stream'} from {name(e.src)} around to "
                             f"{name(e.dst)}.")
            else:
                lines.append(f"{name(e.src)} passes{shape or ' its output'} to {name(e.dst)}.")
        for first, last, label in self.groups:
            lines.append(f"The part from {name(first)} to {name(last)} is repeated: {label}.")
        if highlight:
            lines.append(f"Highlighted: {', '.join(name(k) for k, n in nodes.items() if n.part == highlight)}.")
        return " ".join(lines)


def _edge(src: str, dst: str, notation: tuple[str, ...], shape, sizes: dict[str, int], **kw) -> Edge:
    """An edge whose notation is checked against the recorded shape."""
    shape = tuple(int(s) for s in shape)
    expected = tuple(sizes[s] if s in sizes else None for s in notation)
    if len(notation) != len(shape) or any(e is not None and e != s for e, s in zip(expected, shape)):
        raise ValueError(
            f"diagram arrow {src} -> {dst}: the notation ({', '.join(notation)}) = {expected} does not match the "
            f"recorded shape {shape}; the code changed, so the diagram's labels must too"
        )
    return Edge(src, dst, notation, shape, **kw)


# -- drawing ----------------------------------------------------------------------------------------------------

_HEIGHT = {"box": 0.50, "add": 0.30, "io": 0.30}
_DETAIL_EXTRA = 0.22  # per detail line
_GAP = 0.70  # vertical room for an arrow and its two-line label


def _node_height(n: Node) -> float:
    extra = _DETAIL_EXTRA * (n.detail.count("\n") + 1) if n.detail and n.kind == "box" else 0.0
    return _HEIGHT[n.kind] + extra


def draw(flow: Flow, highlight: str | None = None) -> plt.Figure:
    """Draw a :class:`Flow`: rows top to bottom, labelled arrows, ``highlight`` tinted in the theme's blue."""
    if highlight is not None and highlight not in flow.parts():
        raise ValueError(f"unknown highlight {highlight!r} for this diagram: choose from {flow.parts()}")
    use_book_style()
    W = FIG_WIDTH
    heights = [max(_node_height(n) for n in row) for row in flow.rows]
    H = sum(heights) + _GAP * (len(flow.rows) - 1) + 0.2
    fig = plt.figure(figsize=(W, H), layout="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")
    box: dict[str, tuple[float, float, float, float]] = {}  # key -> (x centre, y centre, half width, half height)
    y = 0.1
    for row, h in zip(flow.rows, heights):
        for n in row:
            cx, cy, hw, hh = n.col * W, y + h / 2, n.width * W / 2, _node_height(n) / 2
            if n.kind == "io":  # a bare label: arrows start and end at its text, not at a box edge
                hw = 0.055 * max(len(line) for line in n.title.splitlines())
            box[n.key] = (cx, cy, hw, hh)
            lit = highlight is not None and n.part == highlight
            if n.kind == "box":
                ax.add_patch(FancyBboxPatch((cx - hw, cy - hh), 2 * hw, 2 * hh, boxstyle="round,pad=0,rounding_size=0.08",
                                            facecolor=HIGHLIGHT_FILL if lit else BOX_FILL,
                                            edgecolor=BLUE if lit else EDGE, linewidth=2.5 if lit else 1.0))
                title_y = cy - (hh - _HEIGHT["box"] / 2) if n.detail else cy
                ax.text(cx, title_y, n.title, ha="center", va="center", fontsize=TITLE_PT,
                        fontweight="bold" if lit else "normal")
                if n.detail:
                    ax.text(cx, title_y + _HEIGHT["box"] / 2 - 0.04, n.detail, ha="center", va="top",
                            fontsize=DETAIL_PT, color=GREY, linespacing=1.15)
            elif n.kind == "add":
                r = hh
                box[n.key] = (cx, cy, r, r)
                ax.add_patch(Circle((cx, cy), r, facecolor=HIGHLIGHT_FILL if lit else "white",
                                    edgecolor=BLUE if lit else EDGE, linewidth=2.5 if lit else 1.0))
                ax.text(cx, cy, "+", ha="center", va="center", fontsize=TITLE_PT + 2)
                if n.title:
                    ax.text(cx - r - 0.08, cy, n.title, ha="right", va="center", fontsize=SMALL_PT, color=GREY)
            else:
                ax.text(cx, cy, n.title, ha="center", va="center", fontsize=TITLE_PT,
                        fontweight="bold" if lit else "normal", color=BLUE if lit else "#111111")
        y += h + _GAP
    right = max((box[n.key][0] + box[n.key][2] for row in flow.rows for n in row if n.kind == "box"), default=W / 2)
    arrow = dict(arrowstyle="-|>", color=EDGE, linewidth=1.2, shrinkA=0, shrinkB=0, mutation_scale=12)
    out_degree: dict[str, int] = {}
    for e in flow.edges:
        out_degree[e.src] = out_degree.get(e.src, 0) + 1

    def label(x, y, e, ha="left", va="center"):
        sym, num = e.label()
        if not (sym and e.show_label):
            return
        if ha == "left" and x + 0.08 + 0.085 * len(sym) > W:  # would leave the figure: put it on the left
            ha = "right"
        x = x + 0.08 if ha == "left" else x - 0.08 if ha == "right" else x
        dy = {"center": 0.0, "top": 0.16, "bottom": -0.16}[va]
        ax.text(x, y + dy - 0.005, sym, ha=ha, va="bottom", fontsize=SHAPE_PT, color="#111111")
        ax.text(x, y + dy + 0.005, num, ha=ha, va="top", fontsize=SMALL_PT, color=GREY)

    for e in flow.edges:
        sx, sy, shw, shh = box[e.src]
        dx, dy, dhw, dhh = box[e.dst]
        if e.kind == "skip":
            x_side = right + 0.22  # outside every box, so the bypass crosses nothing
            ax.plot([sx + shw, x_side, x_side], [sy, sy, dy], color=EDGE, linewidth=1.2)
            ax.annotate("", xy=(dx + dhw, dy), xytext=(x_side, dy), arrowprops=arrow)
        elif e.kind == "side":
            ax.annotate("", xy=(dx - dhw, dy), xytext=(sx + shw, sy), arrowprops=arrow)
            label(sx, sy + 0.06, e, ha="center", va="top")  # under the source, clear of the arrow
        elif abs(sx - dx) < 1e-6:
            ax.annotate("", xy=(dx, dy - dhh), xytext=(sx, sy + shh), arrowprops=arrow)
            label(sx, (sy + shh + dy - dhh) / 2, e)
        else:  # an elbow: down, across just above the target, down into it
            y_turn = dy - dhh - _GAP / 2
            ax.plot([sx, sx, dx], [sy + shh, y_turn, y_turn], color=EDGE, linewidth=1.2)
            ax.annotate("", xy=(dx, dy - dhh), xytext=(dx, y_turn), arrowprops=arrow)
            if out_degree[e.src] == 1:  # label the leg it alone owns: under its source
                label(sx, sy + shh + 0.03, e, va="top")
            else:
                label(dx, y_turn + 0.03, e, va="top")
    for first, last, label in flow.groups:
        (fx, fy, fhw, fhh), (lx, ly, lhw, lhh) = box[first], box[last]
        left, right = min(fx - fhw, lx - lhw) - 0.1, max(fx + fhw, lx + lhw) + 0.1
        ax.add_patch(FancyBboxPatch((left, fy - fhh - 0.1), right - left, ly + lhh - fy + fhh + 0.2,
                                    boxstyle="round,pad=0,rounding_size=0.1", facecolor="none", edgecolor=GREY,
                                    linestyle="--", linewidth=1.0))
        ax.text(left - 0.06, ly + lhh + 0.1, label, ha="right", va="bottom", fontsize=SMALL_PT, color=GREY)
    return fig


def min_font_px(fig: plt.Figure, width_px: float = 390) -> float:
    """The smallest text on ``fig`` in CSS pixels when the figure is shown ``width_px`` wide."""
    sizes = [t.get_fontsize() for t in fig.findobj(plt.Text) if t.get_text().strip()]
    # f points are f / 72 inches of a figure that is get_figwidth() inches across width_px pixels
    return min(sizes) / 72 * width_px / fig.get_figwidth() if sizes else float("inf")


# -- the running example --------------------------------------------------------------------------------------


def _default_lm(model, token_ids, norm_position=None):
    """The walkthrough's model and input unless given; ``norm_position`` rebuilds it with the other placement."""
    if model is None:
        w = walkthrough()
        model, token_ids = w.model, w.token_ids[None]
    if token_ids is None:
        raise ValueError("pass the input token_ids (B, T) with the model")
    token_ids = torch.as_tensor(token_ids)
    if token_ids.dim() == 1:
        token_ids = token_ids[None]
    if norm_position is not None and norm_position != model.config.norm_position:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = type(model)(model.config.replace(norm_position=norm_position))
    return model, token_ids


def _sizes(config: TransformerConfig, B: int, T: int, S: int | None = None) -> dict[str, int]:
    sizes = {"B": B, "T": T}
    if S is not None:
        sizes["S"] = S
    sizes.update(D=config.d_model, H=config.n_heads, d_head=config.d_head, F=config.ffn_width, V=config.vocab_size)
    if config.n_kv_heads not in (None, config.n_heads):
        sizes["Hkv"] = config.n_kv_heads
    return sizes


def _norm_title(module: nn.Module) -> str:
    return type(module).__name__  # LayerNorm or RMSNorm


def _ffn_detail(ffn: nn.Module) -> str:
    if isinstance(ffn, SwiGLU):
        return "SwiGLU: W2(SiLU(W1 x) * W3 x)\nD → F → D"
    if isinstance(ffn, FeedForward):
        act = {"relu": "ReLU", "gelu": "GELU"}[ffn.activation]
        return f"Linear, {act}, Linear\nD → F → D"
    return type(ffn).__name__


def _attn_detail(attn: MultiHeadAttention, cross: bool) -> str:
    if cross:
        return f"Q from x, K and V from memory\nH = {attn.n_heads}"
    how = "causal" if attn.causal else "bidirectional"
    rope = ", RoPE" if attn.rope is not None else ""
    return f"{how}{rope}, H = {attn.n_heads}"


def _block_calls(calls: dict[str, list[Call]], prefix: str) -> list[Call]:
    """The block's direct children, in the order they ran."""
    depth = prefix.count(".") + 1
    kids = [c for name, cs in calls.items() if name.startswith(prefix + ".") and name.count(".") == depth for c in cs]
    return sorted(kids, key=lambda c: c.index)


def block_flow(model=None, token_ids=None, *, norm_position: str | None = None, layer: int = 0) -> Flow:
    """One Transformer block of a :class:`~tinyformer.TransformerLM` (or Encoder), as recorded on ``token_ids``.

    ``norm_position`` ("pre"/"post") draws the same configuration with the other norm
    placement (a freshly built model: shapes do not depend on the weights).
    """
    model, ids = _default_lm(model, token_ids, norm_position)
    if not isinstance(model, (TransformerLM, Encoder)):
        raise TypeError(f"block_flow needs a TransformerLM or Encoder, got {type(model).__name__}")
    if not 0 <= layer < len(model.blocks):
        raise ValueError(f"layer {layer} does not exist: the model has layers 0..{len(model.blocks) - 1}")
    calls = trace(model, ids)
    prefix = f"blocks.{layer}"
    block = model.blocks[layer]
    sizes = _sizes(model.config, *ids.shape)
    x_shape = calls[prefix][0].in_shape
    BTD = ("B", "T", "D")
    rows = [[Node("x", "block input x", kind="io", part="input")]]
    edges: list[Edge] = []
    pre = block.norm_position == "pre"
    norm_of = {"self_attn": "norm1", "cross_attn": "norm_cross", "ffn": "norm2"}
    stream, prev, prev_shape = "x", "x", x_shape  # the residual stream's node; the node the next arrow leaves
    ran = [c for c in _block_calls(calls, prefix) if c.name.rsplit(".", 1)[1] in norm_of]
    for call in ran:
        kind = call.name.rsplit(".", 1)[1]
        norm_name = norm_of[kind]
        norm_call = calls[f"{prefix}.{norm_name}"][0]
        norm = Node(norm_name, _norm_title(norm_call.module), part="norm")
        if kind == "ffn":
            sub = Node("ffn", "Feed-forward", _ffn_detail(call.module), part="ffn")
        else:
            cross = kind == "cross_attn"
            sub = Node(kind, "Cross-attention" if cross else "Multi-head self-attention",
                       _attn_detail(call.module, cross), part="attention")
        add = Node(f"add_{kind}", "residual", kind="add", part="residual",
                   alt=f"the residual add (stream + {sub.title.lower()} output)")
        if pre:
            rows += [[norm], [sub], [add]]
            edges += [_edge(prev, norm.key, BTD, prev_shape, sizes),
                      _edge(norm.key, sub.key, BTD, call.in_shape, sizes),
                      _edge(sub.key, add.key, BTD, call.out_shape, sizes),
                      _edge(stream, add.key, BTD, prev_shape, sizes, kind="skip")]
            stream = prev = add.key
            prev_shape = call.out_shape
        else:
            rows += [[sub], [add], [norm]]
            edges += [_edge(prev, sub.key, BTD, call.in_shape, sizes),
                      _edge(sub.key, add.key, BTD, call.out_shape, sizes),
                      _edge(stream, add.key, BTD, call.in_shape, sizes, kind="skip"),
                      _edge(add.key, norm.key, BTD, norm_call.in_shape, sizes)]
            stream = prev = norm.key
            prev_shape = norm_call.out_shape
    rows.append([Node("out", "block output", kind="io", part="output")])
    edges.append(_edge(prev, "out", BTD, calls[prefix][0].out_shape, sizes))
    where = "pre-norm: x + sublayer(norm(x))" if pre else "post-norm: norm(x + sublayer(x))"
    return Flow(f"one Transformer block, {where}", f"{type(model).__name__}.blocks[{layer}] "
                f"(tinyformer.blocks.TransformerBlock)", rows, edges, sizes)


def block_diagram(model=None, token_ids=None, *, norm_position: str | None = None, layer: int = 0,
                  highlight: str | None = None):
    """Draw :func:`block_flow`; returns ``(figure, alt_text)``. Highlights: attention, ffn, norm, residual,
    input, output."""
    flow = block_flow(model, token_ids, norm_position=norm_position, layer=layer)
    return draw(flow, highlight), flow.alt_text(highlight)


def _positions_node(embed) -> Node:
    if embed.position is not None:
        kind = type(embed.position).__name__.replace("PositionalEncoding", "").replace("PositionalEmbedding", "")
        return Node("positions", "+ positions", f"{kind.lower()}, one vector per position", part="positions")
    if embed.rope is not None:
        return Node("positions", "positions: none added", "RoPE rotates q, k in attention", part="positions")
    return Node("positions", "positions: none", "", part="positions")


def lm_flow(model=None, token_ids=None) -> Flow:
    """The decoder-only language model end to end: ids -> embedding -> positions -> N blocks -> norm -> logits."""
    model, ids = _default_lm(model, token_ids)
    if not isinstance(model, TransformerLM):
        raise TypeError(f"lm_flow needs a TransformerLM, got {type(model).__name__}")
    calls = trace(model, ids)
    c = model.config
    sizes = _sizes(c, *ids.shape)
    N = len(model.blocks)
    first, last = calls["blocks.0"][0], calls[f"blocks.{N - 1}"][0]
    emb = calls["embed.token_embedding"][0]
    block = model.blocks[0]
    block_detail = (f"{block.norm_position}-norm {_norm_title(block.norm1)},\n"
                    f"{_ffn_detail(block.ffn).splitlines()[0].split(':')[0]}, "
                    f"{_attn_detail(block.self_attn, False).split(',')[0]}")
    rows = [[Node("ids", "token ids", kind="io", part="input")],
            [Node("embedding", "Token embedding", "V rows of D numbers", part="embedding")],
            [_positions_node(model.embed)],
            [Node("blocks", f"{N} × Transformer block", block_detail, part="blocks")]]
    edges = [_edge("ids", "embedding", ("B", "T"), emb.in_shape, sizes),
             _edge("embedding", "positions", ("B", "T", "D"), emb.out_shape, sizes),
             _edge("positions", "blocks", ("B", "T", "D"), first.in_shape, sizes)]
    prev = "blocks"
    if not isinstance(model.final_norm, nn.Identity):
        fn = calls["final_norm"][0]
        rows.append([Node("final_norm", f"final {_norm_title(fn.module)}", part="final_norm")])
        edges.append(_edge("blocks", "final_norm", ("B", "T", "D"), last.out_shape, sizes))
        prev = "final_norm"
    head = calls["lm_head"][0]
    rows += [[Node("lm_head", "LM head (Linear)", "D → V", part="lm_head")],
             [Node("logits", "logits", kind="io", part="output")]]
    edges += [_edge(prev, "lm_head", ("B", "T", "D"), head.in_shape, sizes),
              _edge("lm_head", "logits", ("B", "T", "V"), head.out_shape, sizes)]
    return Flow("the decoder-only language model", "tinyformer.TransformerLM", rows, edges, sizes)


def lm_diagram(model=None, token_ids=None, *, highlight: str | None = None):
    """Draw :func:`lm_flow`; returns ``(figure, alt_text)``. Highlights: input, embedding, positions, blocks,
    final_norm (pre-norm models), lm_head, output."""
    flow = lm_flow(model, token_ids)
    return draw(flow, highlight), flow.alt_text(highlight)


def _attention_calls(model, ids, layer):
    model, ids = _default_lm(model, ids)
    if not isinstance(model, (TransformerLM, Encoder)):
        raise TypeError(f"needs a TransformerLM or Encoder, got {type(model).__name__}")
    calls = trace(model, ids)
    p = f"blocks.{layer}.self_attn"
    if p not in calls:
        raise ValueError(f"layer {layer} does not exist: the model has layers 0..{len(model.blocks) - 1}")
    return model, ids, calls, p


def qkv_flow(model=None, token_ids=None, *, layer: int = 0) -> Flow:
    """Queries, keys and values, the scores, softmax, and the weighted sum of the values."""
    model, ids, calls, p = _attention_calls(model, token_ids, layer)
    attn = calls[p][0]
    sizes = _sizes(model.config, *ids.shape)
    kv = ("B", "T", "Hkv*d_head") if "Hkv" in sizes else ("B", "T", "D")
    if "Hkv" in sizes:
        sizes["Hkv*d_head"] = sizes["Hkv"] * sizes["d_head"]
    q, k, v = (calls[f"{p}.{n}_proj"][0] for n in "qkv")
    weights = attn.outputs[1]
    masked = "causal mask, softmax" if attn.module.causal else "softmax"
    rows = [[Node("x", "x", kind="io", part="input")],
            [Node(f"W_{n}", f"W_{n}", part="projections", col=c, width=0.26)
             for n, c in (("Q", 0.17), ("K", 0.5), ("V", 0.83))],
            [Node("scores", "scores", "Q Kᵀ / √d_head", part="scores", col=0.34, width=0.5)],
            [Node("softmax", "weights", masked + "\nrows sum to 1", part="softmax", col=0.34, width=0.5)],
            [Node("weighted_sum", "weighted sum", "weights · V, heads joined", part="weighted_sum", col=0.5,
                  width=0.62)],
            [Node("out", "to W_O", kind="io", part="output")]]
    scores_shape = ("B", "H", "T", "T")
    edges = [_edge("x", "W_Q", ("B", "T", "D"), q.in_shape, sizes),
             _edge("x", "W_K", ("B", "T", "D"), k.in_shape, sizes, show_label=False),
             _edge("x", "W_V", ("B", "T", "D"), v.in_shape, sizes, show_label=False),
             _edge("W_Q", "scores", ("B", "T", "D"), q.out_shape, sizes),
             _edge("W_K", "scores", kv, k.out_shape, sizes, show_label=False),
             _edge("scores", "softmax", scores_shape, weights.shape, sizes),
             _edge("softmax", "weighted_sum", scores_shape, weights.shape, sizes),
             _edge("W_V", "weighted_sum", kv, v.out_shape, sizes),
             _edge("weighted_sum", "out", ("B", "T", "D"), calls[f"{p}.o_proj"][0].in_shape, sizes)]
    return Flow("queries, keys, values and the weighted sum", f"{type(model).__name__}.blocks[{layer}].self_attn "
                "(tinyformer.attention.MultiHeadAttention)", rows, edges, sizes)


def qkv_diagram(model=None, token_ids=None, *, layer: int = 0, highlight: str | None = None):
    """Draw :func:`qkv_flow`; returns ``(figure, alt_text)``. Highlights: input, projections, scores, softmax,
    weighted_sum, output."""
    flow = qkv_flow(model, token_ids, layer=layer)
    return draw(flow, highlight), flow.alt_text(highlight)


def heads_flow(model=None, token_ids=None, *, layer: int = 0) -> Flow:
    """Split into heads, attention in each head, concatenate, W_O."""
    model, ids, calls, p = _attention_calls(model, token_ids, layer)
    attn = calls[p][0]
    m: MultiHeadAttention = attn.module
    sizes = _sizes(model.config, *ids.shape)
    q = calls[f"{p}.q_proj"][0]
    weights = attn.outputs[1]  # (B, H, T, T): one attention pattern per head, as recorded
    H = weights.shape[1]
    shown = list(range(H)) if H <= 3 else [0, 1, H - 1]  # at most three columns stay legible on a phone
    cols = [0.5] if len(shown) == 1 else [0.17 + 0.66 * i / (len(shown) - 1) for i in range(len(shown))]
    head_nodes = [Node(f"head{h}", f"head {h}" if not (H > 3 and i == 2) else f"… head {h}",
                       "attention", part="heads", col=c, width=0.27) for i, (h, c) in enumerate(zip(shown, cols))]
    rows = [[Node("x", "x", kind="io", part="input")],
            [Node("proj", "W_Q, W_K, W_V", "one Linear each, D → D", part="projections")],
            [Node("split", "split into heads", "view (B, T, H, d_head),\nswap T and H", part="split")],
            head_nodes,
            [Node("concat", "concatenate heads", "swap back, reshape", part="concat")],
            [Node("W_O", "W_O (Linear)", "mixes the heads, D → D", part="output_projection")],
            [Node("out", "attention output", kind="io", part="output")]]
    per_head = (sizes["B"], sizes["T"], m.d_head)
    edges = [_edge("x", "proj", ("B", "T", "D"), q.in_shape, sizes),
             _edge("proj", "split", ("B", "T", "D"), q.out_shape, sizes)]
    for i, (h, n) in enumerate(zip(shown, head_nodes)):
        edges.append(_edge("split", n.key, ("B", "T", "d_head"), per_head, sizes, show_label=i == 0))
    o = calls[f"{p}.o_proj"][0]
    for i, (h, n) in enumerate(zip(shown, head_nodes)):
        edges.append(_edge(n.key, "concat", ("B", "T", "d_head"), per_head, sizes, show_label=i == 0))
    if o.in_shape[-1] != H * m.d_head:
        raise ValueError(f"W_O reads {o.in_shape[-1]} features, not H * d_head = {H * m.d_head}")
    edges += [_edge("concat", "W_O", ("B", "T", "D"), o.in_shape, sizes),
              _edge("W_O", "out", ("B", "T", "D"), attn.out_shape, sizes)]
    return Flow(f"multi-head attention with H = {H} heads", f"{type(model).__name__}.blocks[{layer}].self_attn "
                "(tinyformer.attention.MultiHeadAttention)", rows, edges, sizes)


def heads_diagram(model=None, token_ids=None, *, layer: int = 0, highlight: str | None = None):
    """Draw :func:`heads_flow`; returns ``(figure, alt_text)``. Highlights: input, projections, split, heads,
    concat, output_projection, output."""
    flow = heads_flow(model, token_ids, layer=layer)
    return draw(flow, highlight), flow.alt_text(highlight)


def _default_encdec(model, src_ids, tgt_ids):
    if model is None:
        tok = walkthrough_tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = EncoderDecoder(preset("walkthrough", context_length=8))
        src_ids, tgt_ids = torch.tensor([tok.encode("in god")]), torch.tensor([tok.encode("lord")])
    if not isinstance(model, EncoderDecoder):
        raise TypeError(f"needs a tinyformer.EncoderDecoder, got {type(model).__name__}")
    if src_ids is None or tgt_ids is None:
        raise ValueError("pass src_ids (B, S) and tgt_ids (B, T) with the model")
    return model, torch.as_tensor(src_ids), torch.as_tensor(tgt_ids)


def encoder_decoder_flow(model=None, src_ids=None, tgt_ids=None) -> Flow:
    """The original Transformer: the encoder reads the source, the decoder's cross-attention reads the encoder."""
    model, src, tgt = _default_encdec(model, src_ids, tgt_ids)
    calls = trace(model, src, tgt)
    c = model.config
    sizes = _sizes(c, tgt.shape[0], tgt.shape[1], src.shape[1])
    N = len(model.decoder.blocks)
    L, R, Wc = 0.26, 0.74, 0.46
    dec0 = "decoder.blocks.0"
    enc_block = model.encoder.blocks[0]
    rows = [
        [Node("src", "source ids", kind="io", part="input", col=L), Node("tgt", "target ids", kind="io",
                                                                         part="input", col=R)],
        [Node("enc_embed", "embedding\n+ positions", part="embedding", col=L, width=Wc),
         Node("dec_embed", "embedding\n+ positions", part="embedding", col=R, width=Wc)],
        [Node("encoder", f"{len(model.encoder.blocks)} × encoder\nblock",
              ("bidirectional" if not enc_block.self_attn.causal else "causal") + " self-attn,\nFFN", part="encoder",
              col=L, width=Wc),
         Node("self_attn", "masked self-\nattention", "causal" if model.decoder.blocks[0].self_attn.causal else "",
              part="self_attention", col=R, width=Wc)],
        [Node("memory", "memory", kind="io", part="memory", col=L),
         Node("cross_attn", "cross-\nattention", "Q: decoder;\nK, V: memory", part="cross_attention", col=R,
              width=Wc)],
        [Node("ffn", "feed-forward", part="ffn", col=R, width=Wc)],
        [Node("lm_head", "LM head", "D → V", part="lm_head", col=R, width=Wc)],
        [Node("logits", "logits", kind="io", part="output", col=R)],
    ]
    enc_out = calls["encoder"][0]
    cross = calls[f"{dec0}.cross_attn"][0]
    edges = [
        _edge("src", "enc_embed", ("B", "S"), calls["encoder.embed"][0].in_shape, sizes),
        _edge("enc_embed", "encoder", ("B", "S", "D"), calls["encoder.embed"][0].out_shape, sizes),
        _edge("encoder", "memory", ("B", "S", "D"), enc_out.out_shape, sizes),
        _edge("tgt", "dec_embed", ("B", "T"), calls["decoder.embed"][0].in_shape, sizes),
        _edge("dec_embed", "self_attn", ("B", "T", "D"), calls["decoder.embed"][0].out_shape, sizes),
        _edge("self_attn", "cross_attn", ("B", "T", "D"), calls[f"{dec0}.self_attn"][0].out_shape, sizes),
        # cross-attention's recorded inputs: x (B, T, D), then the memory (B, S, D) its keys and values come from
        _edge("memory", "cross_attn", ("B", "S", "D"), cross.inputs[1].shape, sizes, kind="side"),
        _edge("cross_attn", "ffn", ("B", "T", "D"), cross.out_shape, sizes),
        _edge("ffn", "lm_head", ("B", "T", "D"), calls["decoder.lm_head"][0].in_shape, sizes),
        _edge("lm_head", "logits", ("B", "T", "V"), calls["decoder.lm_head"][0].out_shape, sizes),
    ]
    block = model.decoder.blocks[0]
    label = f"{N} × decoder block"
    return Flow("the encoder-decoder Transformer with cross-attention", "tinyformer.EncoderDecoder", rows, edges,
                sizes, groups=[("self_attn", "ffn", label)])


def encoder_decoder_diagram(model=None, src_ids=None, tgt_ids=None, *, highlight: str | None = None):
    """Draw :func:`encoder_decoder_flow`; returns ``(figure, alt_text)``. Highlights: input, embedding, encoder,
    memory, self_attention, cross_attention, ffn, lm_head, output."""
    flow = encoder_decoder_flow(model, src_ids, tgt_ids)
    return draw(flow, highlight), flow.alt_text(highlight)
