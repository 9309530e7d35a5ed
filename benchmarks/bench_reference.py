"""The reference small-GPT recipe on character-level Tiny Shakespeare, row by row:

    python benchmarks/bench_reference.py               # the full recipe: 2000 steps per row
    python benchmarks/bench_reference.py --steps 20 --eval-batches 5   # a smoke test

Recipe: 4 layers, 4 heads, d_model 128, context 64, batch 12, AdamW lr 1e-3 -> 1e-4 (cosine,
100 warmup steps), betas (0.9, 0.99), weight decay 0.1 on 2-D weights only, clip 1.0, no
dropout; the last 10% of the text held out; val loss = mean of 200 batches.

Rows: tinyformer's from-scratch path, its fused path (untied and tied, GPT-2 style with
init="gpt2"), the modern decoder (RoPE, RMSNorm, SwiGLU; fused), and the same GPT-2 shape
assembled from PyTorch's modules (bench_training.TorchReferenceLM). The rows train in lockstep,
one step of each in turn on the same batches, so a machine whose load changes during the run
slows every row alike and the speed ratios stay comparable. Peak memory is measured in a fresh
process (profiling.run_isolated).

Tiny Shakespeare comes from the shared offline copy when present, else the pinned download;
the King James Bible only if neither is available (the JSON records which).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from _common import print_table, write_json
from bench_training import TorchReferenceLM

import tinyformer as tf
from tinyformer.data import load_corpus, train_val_split
from tinyformer.book.profiling import peak_memory_mib, run_isolated
from tinyformer import clip_gradients, cosine_lr_schedule, get_batch, lm_loss, make_optimizer

RECIPE = dict(n_layers=4, n_heads=4, d_model=128, context_length=64, batch_size=12, steps=2000, lr=1e-3, min_lr=1e-4,
              warmup=100, betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0, val_fraction=0.1, eval_batches=200)
GPT2_STYLE = dict(positions="learned", norm="layer", norm_position="pre", ffn="gelu", bias=False, init="gpt2")
REFERENCE = "PyTorch modules (reference)"

# name -> (TransformerConfig overrides, or None for the PyTorch-modules model; training impl)
ROWS = {
    "scratch (GPT-2 style)": (dict(GPT2_STYLE, impl="scratch"), "scratch"),
    "fused (GPT-2 style)": (dict(GPT2_STYLE, impl="fused"), "fused"),
    "fused + tied (GPT-2 style)": (dict(GPT2_STYLE, impl="fused", tie_embeddings=True), "fused"),
    "modern (RoPE, RMSNorm, SwiGLU; fused)": (dict(impl="fused"), "fused"),
    REFERENCE: (None, "fused"),
}


def base_config(vocab_size: int) -> tf.TransformerConfig:
    r = RECIPE
    return tf.TransformerConfig(vocab_size=vocab_size, context_length=r["context_length"], d_model=r["d_model"],
                                n_layers=r["n_layers"], n_heads=r["n_heads"])


def build(name: str, vocab_size: int, seed: int = 1337):
    overrides, impl = ROWS[name]
    torch.manual_seed(seed)
    if overrides is None:
        model = TorchReferenceLM(base_config(vocab_size).replace(**GPT2_STYLE))
    else:
        model = tf.TransformerLM(base_config(vocab_size).replace(**overrides))
    optimizer = make_optimizer(model, lr=RECIPE["lr"], betas=RECIPE["betas"], weight_decay=RECIPE["weight_decay"],
                               impl=impl)
    return model, optimizer, impl


def make_step(model, optimizer, impl):
    def step(x, y, lr):
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = lm_loss(model(x), y, impl)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), RECIPE["grad_clip"], impl)
        optimizer.step()
        return loss

    return step


def peak_memory(names: list[str], vocab_size: int) -> dict:
    """Extra peak MiB of one training step per row, after a warm-up step (optimizer state
    exists). Meant for run_isolated."""
    g = torch.Generator().manual_seed(0)
    shape = (RECIPE["batch_size"], RECIPE["context_length"])
    x, y = torch.randint(0, vocab_size, shape, generator=g), torch.randint(0, vocab_size, shape, generator=g)
    out = {}
    for name in names:
        step = make_step(*build(name, vocab_size))
        out[name] = peak_memory_mib(lambda: step(x, y, RECIPE["lr"]))
    return out


@torch.no_grad()
def evaluate(model, val_tokens, batches: int, seed: int = 2024) -> float:
    """Mean loss over ``batches`` random validation windows (the same windows for every row)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(batches):
        x, y = get_batch(val_tokens, RECIPE["batch_size"], RECIPE["context_length"], generator=g)
        losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
    model.train()
    return sum(losses) / len(losses)


def load_text():
    try:
        return load_corpus("tinyshakespeare")
    except (ConnectionError, ValueError) as exc:
        print(f"Tiny Shakespeare unavailable ({exc}); falling back to the King James Bible", file=sys.stderr)
        return load_corpus("kjv")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=RECIPE["steps"], help="training steps per row (recipe: 2000)")
    parser.add_argument("--eval-batches", type=int, default=RECIPE["eval_batches"], help="validation batches (recipe: 200)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), metavar="ROW",
                        help=f"subset of rows to run, from: {list(ROWS)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results/reference.json")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice). 1 keeps the rows' ratios honest on a machine "
                             "shared with other work: several spinning threads per process stall each other there")
    parser.add_argument("--note", default="", help="free text stored in the JSON (for example: machine under load)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_batches < 1:
        parser.error(f"--steps and --eval-batches must be >= 1, got {args.steps} and {args.eval_batches}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    from tqdm.auto import tqdm

    corpus = load_text()
    tokenizer = tf.CharTokenizer.from_text(corpus.text)
    tokens = torch.tensor(tokenizer.encode(corpus.text), dtype=torch.int64).numpy()
    train_tokens, val_tokens = train_val_split(tokens, RECIPE["val_fraction"])
    V = tokenizer.vocab_size
    rows = {name: build(name, V) for name in args.rows}
    steps = {name: make_step(*parts) for name, parts in rows.items()}
    seconds = dict.fromkeys(rows, 0.0)
    sampler = torch.Generator().manual_seed(1337)
    warmup = min(RECIPE["warmup"], args.steps)
    for it in tqdm(range(args.steps), desc="training (all rows in lockstep)", unit="step"):
        lr = cosine_lr_schedule(it, RECIPE["lr"], RECIPE["min_lr"], warmup, args.steps)
        x, y = get_batch(train_tokens, RECIPE["batch_size"], RECIPE["context_length"], generator=sampler)
        for name, step in steps.items():
            start = time.perf_counter()
            step(x, y, lr)
            seconds[name] += time.perf_counter() - start
    peaks = {} if args.no_memory else run_isolated(peak_memory, args.rows, V)
    tokens_per_step = RECIPE["batch_size"] * RECIPE["context_length"]
    table = []
    for name, (model, _, impl) in rows.items():
        table.append({
            "row": name,
            "val loss": evaluate(model, val_tokens, args.eval_batches),
            "ms/step": 1000 * seconds[name] / args.steps,
            "tokens/s": tokens_per_step * args.steps / seconds[name],
            "peak extra MiB": peaks.get(name),
            "parameters": tf.count_parameters(model),
            "impl": impl,
            "config": model.config.to_dict() if hasattr(model, "config") else None,
        })
    by = {r["row"]: r for r in table}
    if REFERENCE in by:
        for r in table:
            r["speed vs reference"] = r["tokens/s"] / by[REFERENCE]["tokens/s"]
    print(f"corpus: {corpus.name} ({len(corpus):,} characters, vocabulary {V}); {args.steps} steps per row\n")
    print_table(table, ["row", "val loss", "ms/step", "tokens/s", "speed vs reference", "peak extra MiB", "parameters"])
    targets = check_targets(by)
    for name, ok in targets.items():
        print(f"{'met ' if ok else 'MISSED'}  {name}")
    if not args.no_write:
        command = "python benchmarks/bench_reference.py" + "".join(
            f" --{k.replace('_', '-')} {v if not isinstance(v, list) else ' '.join(map(repr, v))}"
            for k, v in vars(args).items() if k in ("steps", "eval_batches") and v != RECIPE[k])
        if args.threads is not None:
            command += f" --threads {args.threads}"
        write_json("reference", command, {"recipe": {**RECIPE, "steps": args.steps, "eval_batches": args.eval_batches},
                                          "corpus": {"name": corpus.name, "source": corpus.source,
                                                     "sha256": corpus.sha256, "characters": len(corpus)},
                                          "note": args.note, "rows": table, "targets": targets})
    return {"rows": table, "targets": targets}


def check_targets(by: dict) -> dict:
    """The issue's targets, for the rows that ran (a row that did not run gives no verdict)."""
    out = {}
    ref = by.get(REFERENCE)
    scratch, fused = by.get("scratch (GPT-2 style)"), by.get("fused (GPT-2 style)")
    tied, modern = by.get("fused + tied (GPT-2 style)"), by.get("modern (RoPE, RMSNorm, SwiGLU; fused)")
    if ref and fused:
        out["fused tokens/s >= 1.0x the PyTorch-modules reference"] = fused["tokens/s"] >= ref["tokens/s"]
    if ref and scratch:
        out["scratch within 1.5x of the reference's tokens/s"] = scratch["tokens/s"] * 1.5 >= ref["tokens/s"]
    for r in (fused, tied):
        if r:
            out[f"{r['row']}: val <= 1.88"] = r["val loss"] <= 1.88
    if modern and fused:
        out["modern val <= 0.97x GPT-2 style (fused, untied)"] = modern["val loss"] <= 0.97 * fused["val loss"]
    return out


if __name__ == "__main__":
    main()
