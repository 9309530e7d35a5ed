"""The playground's model: the book's trained model (``BOOK_RUN``) exported to ONNX for the browser.

    python -m tinyformer.book.export --out DIR

The book build runs this (``_ext/tinyformer_book.py``) into ``_build/html/_static/playground/``,
where the playground page (``book/playground.md``, ``assets/playground/playground.js``) runs it
with onnxruntime-web. It loads the cached run the chapters use; it never trains another model.
Three files:

    model.onnx   input ``token_ids`` (B, T) int64, 1 <= T <= context_length (both axes dynamic);
                 outputs ``logits`` (B, T, V) and ``attention_0`` ... ``attention_{L-1}``, each
                 layer's attention weights (B, H, T, T): the model's own, from ``return_weights``.
    vocab.json   the tokenizer (the format ``tinyformer.tokenizer.load_tokenizer`` reads).
    model.json   what the page needs to know: sizes, names, a seed prompt, the file's sha256.

The traced graph is then simplified once by onnxruntime's basic graph optimizations (constant
folding, redundant-node removal: plain ONNX operators, valid for any runtime) and saved: in
onnxruntime-web on one thread that made a 64-character forward pass about 5x faster (16 ms
instead of 84 ms, measured in headless Chromium here), since the browser does not get there on
its own when it loads the raw trace.

Why the TorchScript exporter (``dynamo=False``): it traces the model in about two seconds, and
the traced graph keeps the sequence length symbolic. The ``torch.export`` route (``dynamo=True``)
stops at the Embedding's check that every id is in range (``int(ids.max())`` is data-dependent);
``draft_export`` gets past it but takes about 50 s on 2 cores, too slow for every build. The
checks traced away here (id range, shapes) are Python-side guards, not maths; the page only
feeds ids it encoded itself, cropped to the context, and ``tests/test_export.py`` runs the
exported graph at several lengths against PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write_text, package_hash, sha256_file
from ..train import RunResult

__all__ = ["ModelWithAttention", "export_onnx", "seed_prompt", "export_playground", "main"]

FORMAT = "tinyformer-playground-v1"
OPSET = 17  # ONNX opset: supported by onnxruntime 1.30 in Python and on the web


class ModelWithAttention(nn.Module):
    """``token_ids (B, T)`` -> ``(logits, attention_0, ..., attention_{L-1})`` as one flat tuple.

    ONNX outputs are a flat list of tensors; the model returns ``(logits, [weights per layer])``
    with ``return_weights=True``. The weights are the ones the model's scratch attention path
    computes and multiplies with the values, not a recomputation.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, token_ids: torch.Tensor):
        logits, weights = self.model(token_ids, return_weights=True)
        return (logits, *weights)


def output_names(n_layers: int) -> list[str]:
    return ["logits"] + [f"attention_{i}" for i in range(n_layers)]


def export_onnx(model: nn.Module, path: str | Path, optimize: bool = True) -> Path:
    """Write ``model`` (a TransformerLM with attn_impl="scratch") to ``path`` as ONNX, simplified by
    onnxruntime's basic optimizations unless ``optimize=False``."""
    config = model.config
    if config.attn_impl != "scratch":
        raise ValueError(f"the playground shows attention weights, which only attn_impl='scratch' materialises; "
                         f"this model has attn_impl={config.attn_impl!r}")
    path = Path(path)
    names = output_names(config.n_layers)
    dynamic = {"token_ids": {0: "B", 1: "T"}, "logits": {0: "B", 1: "T"}}
    dynamic.update({name: {0: "B", 2: "T", 3: "T"} for name in names[1:]})
    example = torch.zeros(1, min(8, config.context_length), dtype=torch.long)
    traced = path.with_name(path.stem + ".traced.onnx") if optimize else path
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        # The trace turns the model's Python-side checks (id range, shapes) into constants and says so
        # once per check; and torch 2.9+ calls this exporter "legacy". Both are expected (see above).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        with torch.no_grad():
            torch.onnx.export(
                ModelWithAttention(model), (example,), str(traced), dynamo=False, opset_version=OPSET,
                input_names=["token_ids"], output_names=names, dynamic_axes=dynamic,
            )
    model.train(was_training)
    if optimize:
        _optimize(traced, path)
        traced.unlink()
    return path


def _optimize(source: Path, target: Path) -> None:
    """onnxruntime's basic level only: the extended levels write fused operators of one runtime."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def seed_prompt(val_text: str, context_length: int, min_chars: int = 40) -> str:
    """The first whole line of validation text (never trained on) that fits the context."""
    for line in val_text.split("\n")[1:]:  # [0] may start mid-line: the split cuts anywhere
        if min_chars <= len(line) <= context_length:
            return line
    raise ValueError(f"no line of {min_chars} to {context_length} characters in the validation text")


def _finite_or_none(x) -> float | None:
    """JSON has no NaN (JavaScript's JSON.parse rejects it): an unknown loss is null."""
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def export_playground(run: RunResult, out: str | Path) -> dict:
    """Export a trained run (:func:`tinyformer.book.runs.load_or_train`'s) into ``out``; return model.json's content."""
    model, tokenizer = run.model, run.tokenizer
    if not hasattr(tokenizer, "chars"):
        raise ValueError(f"the playground encodes text character by character in JavaScript; it needs a "
                         f"CharTokenizer, got {type(tokenizer).__name__}")
    config = model.config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, out / "model.onnx")
    tokenizer.save(out / "vocab.json")
    val_text = tokenizer.decode(run.val_tokens[:20_000].tolist())
    meta = {
        "format": FORMAT,
        "model": "model.onnx",
        "model_bytes": onnx_path.stat().st_size,
        "model_sha256": sha256_file(onnx_path),
        "vocab": "vocab.json",
        "input": "token_ids",
        "outputs": output_names(config.n_layers),
        "vocab_size": config.vocab_size,
        "context_length": config.context_length,
        "n_layers": config.n_layers,
        "n_heads": config.n_heads,
        "d_model": config.d_model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": run.steps,
        "final_val_loss": _finite_or_none(run.final_val_loss),
        "prompt": seed_prompt(val_text, config.context_length),
        "prompt_source": "the first line of the validation text (never trained on) that fits the context",
        "package_hash": package_hash(),  # the build re-exports when the package changes
    }
    atomic_write_text(out / "model.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinyformer.book.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for model.onnx, vocab.json and model.json")
    args = parser.parse_args(argv)
    from .runs import BOOK_RUN, load_or_train

    start = time.perf_counter()
    run = load_or_train(BOOK_RUN, progress=False)  # the cached run; trained only on a cold cache
    meta = export_playground(run, args.out)
    print(f"exported the book's model to {Path(args.out) / meta['model']} ({meta['model_bytes'] / 1e6:.1f} MB, "
          f"{meta['n_layers']} attention outputs) in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
