"""tinyformer: a Transformer language model built from scratch, one idea per module.

    tokenizer   text <-> token ids (characters, byte-level BPE)
    layers      Linear, Embedding, softmax, activations, LayerNorm, RMSNorm, feed-forward
    positions   sinusoidal, learned and rotary (RoPE) positions
    attention   scaled dot-product attention, multi-head attention, KV cache
    blocks      pre-/post-norm Transformer blocks, with optional cross-attention
    model       TransformerLM, Encoder, Decoder, EncoderDecoder, configs and presets
    training    cross-entropy, AdamW (and its weight-decay groups), LR schedule, clipping, batches, checkpoints
    initialization  init schemes (default, gpt2) and their measurements
    sampling    temperature, top-k, top-p, generate()
    data        corpora that work offline, and their splits
    mlm         BERT-style masked LM (encoder-only): the masking rule, its loss, the model

    book/       the book's kit: plots, diagrams, the running example, claims, small experiments
                (reversal, masked LM vs causal, profiling); imports the library, never imported by it
    exercises/  the reader's exercise track: starters, checker, mistake detectors
"""

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
from .training import (
    AdamW,
    CheckpointError,
    clip_grad_norm,
    cosine_lr_schedule,
    cross_entropy,
    get_batch,
    clip_gradients,
    lm_loss,
    load_checkpoint,
    make_optimizer,
    param_groups,
    save_checkpoint,
)
from .initialization import init_statistics, initialize_weights

__version__ = "0.1.0"
