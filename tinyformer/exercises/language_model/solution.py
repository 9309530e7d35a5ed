"""Chapter "The full language model": token ids in, next-token logits out."""

import torch
from torch import nn

# The earlier chapters' reference pieces (your file imports your own, as the starter does).
from tinyformer.exercises.normalization.solution import RMSNorm, TransformerBlock
from tinyformer.exercises.positions.solution import sinusoidal_positions


class TransformerLM(nn.Module):
    """Decoder-only LM: token_ids (B, T) -> logits (B, T, V).

        token_embedding (V, D) + sinusoidal positions (T, D)
        -> n_layers x TransformerBlock -> final_norm (RMSNorm) -> lm_head (V x D, no bias)

    Parameters: token_embedding (nn.Embedding(V, D)), blocks (nn.ModuleList of
    TransformerBlock), final_norm (RMSNorm), lm_head (nn.Linear(D, V, bias=False)).
    """

    def __init__(self, vocab_size, context_length, d_model, n_layers, n_heads, d_ff):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positions(context_length, d_model), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.final_norm = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, token_ids):
        B, T = token_ids.shape
        x = self.token_embedding(token_ids) + self.positions[:T]  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.final_norm(x))  # (B, T, V)
