"""What a chapter needs around its code, wherever it runs: in the book build or in a notebook.

A chapter runs in two places: in ``jupyter-book build`` (the book's Sphinx extension sets
``TINYFORMER_BOOK_BUILD=1`` for the kernels it starts) and in a reader's JupyterLab (Binder,
or a local clone). Three things differ:

- numbers quoted in prose are *glued*: the book substitutes them into the text, a notebook
  cannot, so outside the build :func:`glue` also prints each value under its name;
- the trained model is cached by the build; a reader's fresh kernel may have to train it,
  so :func:`book_run` shows a progress bar there and says how long it takes;
- claims and figure descriptions (:mod:`tinyformer.book.claims`) are recorded for the
  build's ``claims.json`` only inside the build, and checked everywhere.
"""

from __future__ import annotations

import hashlib
import sys

import torch

from . import diagrams
from .build_env import chapter_name, in_book_build
from .claims import claim, describe_figure
from .walkthrough import walkthrough

__all__ = ["in_book_build", "chapter_name", "glue", "book_run"]


def glue(name: str, value):
    """Glue ``value`` for ``{glue:text}`name``` in the prose, and return it.

    In the book the value appears in the sentence. In JupyterLab the role shows only its name,
    so there the value is also printed here, under that name, right after the cell that made it.
    """
    from myst_nb import glue as myst_glue  # the book extra's, imported only when a value is glued

    myst_glue(name, value, display=False)
    if not in_book_build():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"[quoted in the text] {name} = {shown}")
    return value


def book_run():
    """The book's trained model (``BOOK_RUN``): loaded from the cache, or trained on first use.

    The build trains it once and caches it; a reader's fresh kernel (Binder, Colab, a new clone)
    trains it here with a progress bar: about a minute on 2 CPU cores.
    """
    from .runs import BOOK_RUN, load_or_train

    if in_book_build():
        return load_or_train(BOOK_RUN, progress=False)
    print(f"Loading the book's trained model, or training it on first use "
          f"({BOOK_RUN.max_steps} steps: about a minute on 2 CPU cores) ...", file=sys.stderr, flush=True)
    return load_or_train(BOOK_RUN, progress=True)


# Which diagram opens each chapter, the part of it the chapter teaches, and the model it is drawn
# from: the running example, or (for the chapters about the trained model) book-small itself.
WHERE_WE_ARE = {
    "tokens": ("lm", "embedding", "text becomes token ids, then vectors", "walkthrough"),
    "positions": ("lm", "positions", "the model learns where each token sits", "walkthrough"),
    "attention": ("qkv", "scores", "tokens exchange information through queries, keys and values", "walkthrough"),
    "masks": ("qkv", "softmax", "the mask decides which scores may enter the softmax", "walkthrough"),
    "multihead": ("heads", "heads", "several heads attend in parallel, then mix through W_O", "walkthrough"),
    "normalization": ("block", "norm", "norms and residual connections keep the block trainable", "walkthrough"),
    "architectures": ("encoder_decoder", "cross_attention", "encoder, decoder and cross-attention", "walkthrough"),
    "language_model": ("lm", "lm_head", "the whole decoder-only model, from ids to logits", "walkthrough"),
    "training": ("lm", "output", "the logits are scored against the next token", "book-small"),
    "sampling": ("lm", "output", "the logits become probabilities, then a chosen token", "book-small"),
    "inside": ("block", "attention", "what the trained attention heads do", "book-small"),
    "fast": ("qkv", "projections", "the keys and values that a KV cache stores", "walkthrough"),
}


def where_we_are(chapter: str):
    """The data-flow diagram of the chapter's part of the model, that part highlighted.

    Drawn from the modules (:mod:`tinyformer.book.diagrams`) of the running example or, for the
    chapters about the trained model, of the trained book-small model (:func:`book_run`) reading
    8 characters. Its alt text and caption are written from the same records
    (:func:`tinyformer.book.claims.describe_figure`), for the figure named ``fig-where-<chapter>``.
    """
    if chapter not in WHERE_WE_ARE:
        raise ValueError(f"no 'where we are' diagram for {chapter!r}; chapters: {sorted(WHERE_WE_ARE)}")
    kind, part, what, source = WHERE_WE_ARE[chapter]
    draw = getattr(diagrams, f"{kind}_diagram")
    if source == "book-small":
        run = book_run()
        ids = torch.as_tensor(run.val_tokens[:8], dtype=torch.long)[None]  # (1, 8)
        fig, alt = draw(run.model, ids, highlight=part)
        drawn_from = "drawn from the trained book-small model's modules reading 8 characters"
    else:
        fig, alt = draw(highlight=part)
        drawn_from = "shapes are those of the running example"
    describe_figure(f"fig-where-{chapter}", alt=alt,
                    caption=f"Where we are: {what}. The highlighted part ({part.replace('_', ' ')}) is this chapter's; "
                            f"{drawn_from}.")
    return fig


def tensor_fingerprint(tensor) -> str:
    """A short sha256 of a tensor's dtype, shape and bytes: equal fingerprints, equal tensors."""
    t = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes())
    return digest.hexdigest()[:16]


def running_example(*names: str):
    """Show the running example (:func:`tinyformer.book.walkthrough.walkthrough`) at the given steps.

    Prints each step small, and claims that these are the walkthrough's own tensors, with a
    fingerprint per step in the claim's values: ``tests/test_book.py`` checks that every page
    showing a step shows the same tensor.
    """
    w = walkthrough()
    w.show(*names)
    claim(f"the running example at {', '.join(names)} is the shared walkthrough's",
          all(name in w for name in names), **{name: tensor_fingerprint(w[name]) for name in names})
    return w
