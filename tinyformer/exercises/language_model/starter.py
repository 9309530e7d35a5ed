"""Your turn, chapter "The full language model": token ids in, next-token logits out.

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter language_model
"""

import torch
from torch import nn

# Your own pieces, from the other files in this folder.
from .normalization import RMSNorm, TransformerBlock
from .positions import sinusoidal_positions


class TransformerLM(nn.Module):
    """A decoder-only language model: token_ids (B, T) -> logits (B, T, V).

        x = token_embedding(token_ids) + sinusoidal_positions(context_length, D)[:T]   (B, T, D)
        x = each TransformerBlock in turn                                              (B, T, D)
        logits = lm_head(final_norm(x))                                                (B, T, V)

    Parameters: token_embedding (nn.Embedding(V, D)), blocks (nn.ModuleList of n_layers
    TransformerBlock(D, H, d_ff)), final_norm (RMSNorm(D)), lm_head (nn.Linear(D, V, bias=False)).
    The position table is not a parameter: keep it in a buffer (register_buffer) or recompute it.
    """

    def __init__(self, vocab_size, context_length, d_model, n_layers, n_heads, d_ff):
        super().__init__()
        raise NotImplementedError

    def forward(self, token_ids):
        raise NotImplementedError
