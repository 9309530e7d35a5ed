"""tinyformer: a Transformer language model built from scratch, one idea per module.

    tokenizer   text <-> token ids (characters, byte-level BPE)
    layers      Linear, Embedding, softmax, activations, LayerNorm, RMSNorm, feed-forward
    positions   sinusoidal, learned and rotary (RoPE) positions
    attention   scaled dot-product attention, multi-head attention, KV cache
    blocks      pre-/post-norm Transformer blocks, with optional cross-attention
    model       TransformerLM, Encoder, Decoder, EncoderDecoder, configs and presets
    losses      cross-entropy (from scratch) and lm_loss (its impl switch)
    optim       AdamW (and its weight-decay groups), LR schedule, gradient clipping
    batches     random training windows and their next-token targets
    checkpoints save and load a model and optimiser, checked by a checksum
    files       atomic file writes and sha256 fingerprints (standard library only)
    train       the training command: python -m tinyformer.train (config, loop, run folder, command line)
    initialization  init schemes (default, gpt2) and their measurements
    sampling    temperature, top-k, top-p, generate()
    data        corpora that work offline, and their splits
    mlm         BERT-style masked LM (encoder-only): the masking rule, its loss, the model

    book/       the book's kit: plots, diagrams, the running example, claims, small experiments
                (reversal, masked LM vs causal, profiling); imports the library, never imported by it
    exercises/  the reader's exercise track: one folder per chapter (starter, solution, checks,
                hints), the checker and the registry beside them; imports the library only
"""

import sys as _sys


def _startup_interrupt_guard() -> None:
    """``python -m tinyformer.train`` (and ``python -m tinyformer.exercises``) imports this package
    (and PyTorch, seconds of work) before its own code runs: a Ctrl-C in that time ends with one
    line and exit 130, not a traceback. Only for those commands (``sys.orig_argv``); each
    restores Python's handler first thing."""
    argv = getattr(_sys, "orig_argv", [])
    if "-m" not in argv[:-1] or argv[argv.index("-m") + 1] not in ("tinyformer.train", "tinyformer.exercises"):
        return
    import signal

    def interrupted(signum, frame):
        print("interrupted while starting (importing PyTorch); nothing was written", file=_sys.stderr)
        raise SystemExit(128 + signum)

    interrupted.tinyformer_startup = True
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupted)


_startup_interrupt_guard()

from .attention import KVCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from .blocks import TransformerBlock
from .layers import (
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    RMSNorm,
    SwiGLU,
    gelu,
    relu,
    silu,
    softmax,
    swiglu_hidden_dim,
)
from .model import (
    PRESETS,
    Decoder,
    Encoder,
    EncoderDecoder,
    TransformerConfig,
    TransformerLM,
    count_parameters,
    parameter_breakdown,
    preset,
)
from .positions import (
    LearnedPositionalEmbedding,
    RotaryPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)
from .sampling import generate, next_token_distribution, sample_next_token
from .tokenizer import BPETokenizer, CharTokenizer, bytes_per_token, load_tokenizer
from .losses import cross_entropy, lm_loss
from .optim import AdamW, clip_grad_norm, clip_gradients, cosine_lr_schedule, make_optimizer, param_groups
from .batches import get_batch
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .initialization import init_statistics, initialize_weights


def _installed_version() -> str:
    """The version pip installed, read from VERSION at install time (pyproject.toml): the one
    place it is written lives outside the package, so a release never changes the library."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tinyformer")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown"


__version__ = _installed_version()
