"""Training throughput and peak memory: from-scratch attention vs the fused path vs a model
assembled from PyTorch's own modules, at the same (GPT-2-style) configuration.

    python benchmarks/bench_training.py                                          # CPU, float32
    python benchmarks/bench_training.py --device cuda --dtype bfloat16 --compile  # a GPU

All three variants run in one process, one after the other, so their ratios are comparable;
absolute numbers only compare on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch import nn

from _common import print_table, write_json

import tinyformer as tf
from tinyformer.book.profiling import peak_memory_mib, run_isolated


class TorchReferenceLM(nn.Module):
    """The same GPT-2-style model from nn.Embedding, nn.TransformerEncoderLayer (pre-norm,
    GELU, causal), nn.LayerNorm and nn.Linear."""

    def __init__(self, c: tf.TransformerConfig):
        super().__init__()
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Embedding(c.context_length, c.d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ffn_width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(c.n_layers)
        )
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def forward(self, ids):
        T = ids.shape[1]
        h = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=ids.device)
        for layer in self.layers:
            h = layer(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h))


def make_variants(config: tf.TransformerConfig) -> dict:
    return {
        "tinyformer, from-scratch attention": lambda: tf.TransformerLM(config),
        "tinyformer, fused attention": lambda: tf.TransformerLM(config.replace(attn_impl="fused")),
        "PyTorch modules (reference)": lambda: TorchReferenceLM(config),
    }


def make_step(model, x, y, device="cpu", autocast=None, compile_model=False):
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast or contextlib.nullcontext():
            loss = nn.functional.cross_entropy(step_model(x).float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def cpu_peak_memory(config_dict: dict, batch: int) -> dict:
    """Extra peak MiB of one training step per variant (after a warm-up step, so the
    optimizer state exists). Run through run_isolated: a fresh process, threshold pinned."""
    config = tf.TransformerConfig.from_dict(config_dict)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (batch, config.context_length), generator=g)
    y = torch.randint(0, config.vocab_size, (batch, config.context_length), generator=g)
    peaks = {}
    for name, make in make_variants(config).items():
        torch.manual_seed(0)
        peaks[name] = peak_memory_mib(make_step(make(), x, y))
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    config = tf.TransformerConfig(vocab_size=512, context_length=args.context, d_model=args.d_model,
                                  n_layers=args.layers, n_heads=args.heads, positions="learned", norm="layer",
                                  norm_position="pre", ffn="gelu", bias=True)
    variants = make_variants(config)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (args.batch, args.context), generator=g).to(args.device)
    y = torch.randint(0, config.vocab_size, (args.batch, args.context), generator=g).to(args.device)
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16) if args.dtype == "bfloat16" else None
    cpu_peaks = None if args.device.startswith("cuda") else run_isolated(cpu_peak_memory, config.to_dict(), args.batch)
    rows = []
    for name, make in variants.items():
        torch.manual_seed(0)
        model = make().to(args.device)
        step = make_step(model, x, y, args.device, autocast, args.compile)
        for _ in range(2):  # warm-up (and compilation)
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - start) / args.steps
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            step()
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = cpu_peaks[name]
        rows.append({"variant": name, "ms/step": 1000 * seconds, "tokens/s": x.numel() / seconds, "peak extra MiB": peak,
                     "parameters": tf.count_parameters(model)})
    base = rows[0]["tokens/s"]
    for r in rows:
        r["speed vs scratch"] = r["tokens/s"] / base
    print(f"config: {config}\nbatch {args.batch} x {args.context} tokens, {args.dtype}, compile={args.compile}\n")
    print_table(rows, ["variant", "ms/step", "tokens/s", "speed vs scratch", "peak extra MiB", "parameters"])
    write_json("training", "python benchmarks/bench_training.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (False, None)),
        {"config": config.to_dict(), "batch": args.batch, "dtype": args.dtype, "compile": args.compile, "rows": rows})


if __name__ == "__main__":
    main()
